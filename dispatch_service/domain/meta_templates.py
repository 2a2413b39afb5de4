"""Templates as Meta describes them, and what a sync changes in our registry (pure).

`GET /{waba-id}/message_templates` returns one item per (name, language) translation
(reference meta-2026 §2.1). :func:`parse_template` reads one item into a
:class:`TemplateDefinition`; :func:`template_changes` names the fields a re-sync changes.

Statuses: Meta has more than our five. Only APPROVED is sendable, so the others map to the
closest of ours that refuses sends: REINSTATED and FLAGGED (still active, quality falling) are
APPROVED; IN_APPEAL is REJECTED until the appeal succeeds; LIMIT_EXCEEDED is PENDING; LOCKED,
ARCHIVED, DELETED and PENDING_DELETION are DISABLED.

Body variables: a NAMED template's are its parameter names (`{{guest_name}}`), in order of
first appearance. A POSITIONAL template's `{{1}}..{{n}}` carry no name, so the registry keeps
the names an operator registered for them when the count still matches (`previous`), and
otherwise names them by position ("1", "2", ...): StartRun then refuses the template with
UNKNOWN_TEMPLATE_VARIABLE until an operator maps them (a run never sends a value it guessed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from common.vocabulary import TemplateCategory, TemplateParameterFormat, TemplateStatus

NAMED_VARIABLE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
POSITIONAL_VARIABLE = re.compile(r"\{\{\s*([0-9]+)\s*\}\}")

META_STATUS: dict[str, TemplateStatus] = {
    "APPROVED": TemplateStatus.APPROVED,
    "REINSTATED": TemplateStatus.APPROVED,
    "FLAGGED": TemplateStatus.APPROVED,
    "PENDING": TemplateStatus.PENDING,
    "LIMIT_EXCEEDED": TemplateStatus.PENDING,
    "REJECTED": TemplateStatus.REJECTED,
    "IN_APPEAL": TemplateStatus.REJECTED,
    "PAUSED": TemplateStatus.PAUSED,
    "DISABLED": TemplateStatus.DISABLED,
    "LOCKED": TemplateStatus.DISABLED,
    "ARCHIVED": TemplateStatus.DISABLED,
    "DELETED": TemplateStatus.DISABLED,
    "PENDING_DELETION": TemplateStatus.DISABLED,
}
QUALITY_SCORES = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})
BUTTON_KEYS = ("type", "text", "url", "phone_number", "example")
"""What the registry keeps of each button (flow and OTP details are not used by invitations)."""


class TemplateItemError(ValueError):
    """A template item Meta returned that this service cannot read (reported, not stored)."""


@dataclass(frozen=True)
class TemplateDefinition:
    """One translation of a template as Meta holds it."""

    meta_template_id: str
    name: str
    language: str
    category: TemplateCategory
    status: TemplateStatus
    quality: str | None
    parameter_format: TemplateParameterFormat
    components: tuple[dict[str, Any], ...]
    body_variables: tuple[str, ...]
    """Named: the parameter names; positional: "1".."n" (see :func:`registry_variables`)."""


def normalise_language(code: str) -> str:
    """Meta's webhook examples write en-US, the API en_US: the registry uses en_US."""
    return code.strip().replace("-", "_")


def meta_status(value: str) -> TemplateStatus | None:
    """Our status for one of Meta's (None when Meta's value is unknown)."""
    return META_STATUS.get(value.strip().upper())


def parse_template(item: Mapping[str, Any]) -> TemplateDefinition:
    """Read one `message_templates` item; TemplateItemError says what is wrong with it."""
    name, language = item.get("name"), item.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language:
        raise TemplateItemError(f"item without a name or language: id {item.get('id')!r}")
    label = f"{name} ({language})"
    meta_id = item.get("id")
    if not isinstance(meta_id, str | int) or isinstance(meta_id, bool) or not str(meta_id):
        raise TemplateItemError(f"{label}: no id")
    try:
        category = TemplateCategory(str(item.get("category", "")).upper())
    except ValueError:
        raise TemplateItemError(f"{label}: unknown category {item.get('category')!r}") from None
    status = meta_status(str(item.get("status", "")))
    if status is None:
        raise TemplateItemError(f"{label}: unknown status {item.get('status')!r}")
    fmt = str(item.get("parameter_format") or "positional").lower()
    try:
        parameter_format = TemplateParameterFormat(fmt)
    except ValueError:
        raise TemplateItemError(f"{label}: unknown parameter_format {fmt!r}") from None
    raw_components = item.get("components") or []
    if not isinstance(raw_components, list):
        raise TemplateItemError(f"{label}: components is not a list")
    components = tuple(_component(c, label) for c in raw_components)
    return TemplateDefinition(
        meta_template_id=str(meta_id),
        name=name,
        language=normalise_language(language),
        category=category,
        status=status,
        quality=_quality(item.get("quality_score")),
        parameter_format=parameter_format,
        components=components,
        body_variables=_body_variables(components, parameter_format),
    )


def _quality(value: Any) -> str | None:
    score = value.get("score") if isinstance(value, Mapping) else value
    if isinstance(score, str) and score.upper() in QUALITY_SCORES:
        return score.upper()
    return None


def _component(raw: Any, label: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
        raise TemplateItemError(f"{label}: a component without a type")
    kind = raw["type"].upper()
    component: dict[str, Any] = {"type": kind}
    if kind == "HEADER":
        component["format"] = str(raw.get("format") or "TEXT").upper()
    for key in ("text", "example"):
        if key in raw:
            component[key] = raw[key]
    if kind == "BUTTONS":
        buttons = raw.get("buttons") or []
        if not isinstance(buttons, list) or not all(isinstance(b, Mapping) for b in buttons):
            raise TemplateItemError(f"{label}: buttons is not a list of objects")
        component["buttons"] = [
            {k: (str(b[k]).upper() if k == "type" else b[k]) for k in BUTTON_KEYS if k in b}
            for b in buttons
        ]
    return component


def _body_variables(
    components: Sequence[Mapping[str, Any]], parameter_format: TemplateParameterFormat
) -> tuple[str, ...]:
    body = next((c for c in components if c["type"] == "BODY"), None)
    text = body.get("text", "") if body else ""
    text = text if isinstance(text, str) else ""
    if parameter_format is TemplateParameterFormat.NAMED:
        return tuple(dict.fromkeys(NAMED_VARIABLE.findall(text)))
    numbers = [int(n) for n in POSITIONAL_VARIABLE.findall(text)]
    return tuple(str(n) for n in range(1, max(numbers, default=0) + 1))


def registry_variables(definition: TemplateDefinition, previous: Sequence[str]) -> list[str]:
    """The variable names the registry stores (see the module docstring)."""
    if definition.parameter_format is TemplateParameterFormat.POSITIONAL and len(previous) == len(
        definition.body_variables
    ):
        return list(previous)
    return list(definition.body_variables)


@dataclass(frozen=True)
class StoredTemplate:
    """The registry fields a sync compares."""

    meta_template_id: str | None
    category: str
    status: str
    quality: str | None
    parameter_format: str
    components: Sequence[Mapping[str, Any]]
    variables: Sequence[str]
    deleted: bool
    source: str


def template_changes(
    stored: StoredTemplate, definition: TemplateDefinition, variables: Sequence[str]
) -> list[str]:
    """The registry fields a sync of `definition` changes, in a stable order."""
    now = {
        "meta_template_id": definition.meta_template_id,
        "category": definition.category.value,
        "status": definition.status.value,
        "quality": definition.quality,
        "parameter_format": definition.parameter_format.value,
        "components": [dict(c) for c in definition.components],
        "variables": list(variables),
        "deleted": False,
        "source": "meta",
    }
    before = {
        "meta_template_id": stored.meta_template_id,
        "category": stored.category,
        "status": stored.status,
        "quality": stored.quality,
        "parameter_format": stored.parameter_format,
        "components": [dict(c) for c in stored.components],
        "variables": list(stored.variables),
        "deleted": stored.deleted,
        "source": stored.source,
    }
    return [field for field in now if now[field] != before[field]]


# --- template webhooks (reference meta-2026 §3) --------------------------------------------------


class TemplateField(StrEnum):
    """The template webhook fields this service acts on."""

    STATUS = "message_template_status_update"
    QUALITY = "message_template_quality_update"
    CATEGORY = "template_category_update"
    COMPONENTS = "message_template_components_update"


HALTING_STATUSES = frozenset(
    {TemplateStatus.PAUSED, TemplateStatus.DISABLED, TemplateStatus.REJECTED}
)
"""A template entering one of these pauses every active run using it."""


@dataclass(frozen=True)
class TemplateWebhook:
    """One template webhook change, as the ingestor normalised it."""

    waba_id: str
    field: TemplateField
    meta_template_id: str
    name: str
    language: str
    at: int
    """Meta's entry.time (Unix seconds): orders webhooks of the same field."""
    event: str = ""
    reason: str = ""
    detail: str = ""
    """other_info title and description, or rejection_info reason and recommendation."""
    new_quality: str = ""
    new_category: str = ""
    previous_category: str = ""
    correct_category: str = ""
    body_text: str = ""
    header_text: str = ""
    footer_text: str = ""
    buttons: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True)
class TemplateEffect:
    """What one webhook does to one registry template."""

    values: dict[str, Any]
    """Registry fields to set (empty: nothing changes)."""
    pause_reason: str | None = None
    """When set, every active run using the template pauses with this reason."""


def template_effect(
    stored: StoredTemplate, name: str, language: str, hook: TemplateWebhook
) -> TemplateEffect:
    """The registry change one webhook makes (pure; staleness is decided by the caller)."""
    label = f"template {name} ({language})"
    if hook.field is TemplateField.STATUS:
        status = meta_status(hook.event)
        if status is None:
            return TemplateEffect({})
        why = "; ".join(p for p in (_reason(hook.reason), hook.detail) if p)
        values: dict[str, Any] = {"status": status.value, "status_reason": why or None}
        pause = None
        if status in HALTING_STATUSES:
            pause = f"{label} is {hook.event.upper()} on Meta" + (f": {why}" if why else "")
        return TemplateEffect(values, pause)
    if hook.field is TemplateField.QUALITY:
        quality = _quality(hook.new_quality)
        return TemplateEffect({"quality": quality} if quality else {})
    if hook.field is TemplateField.CATEGORY:
        return TemplateEffect(_category_values(stored, hook))
    return TemplateEffect(_component_values(stored, hook))


def _reason(reason: str) -> str:
    return "" if reason.strip().upper() in ("", "NONE") else reason.strip()


def _category(value: str) -> TemplateCategory | None:
    try:
        return TemplateCategory(value.strip().upper())
    except ValueError:
        return None


def _category_values(stored: StoredTemplate, hook: TemplateWebhook) -> dict[str, Any]:
    correct = _category(hook.correct_category)
    if correct is not None:  # impending: Meta will move it (new_category is the current one)
        return {"pending_category": correct.value} if correct.value != stored.category else {}
    new = _category(hook.new_category)
    if new is None or new.value == stored.category:
        return {"pending_category": None} if new is not None else {}
    return {"category": new.value, "previous_category": stored.category, "pending_category": None}


def _component_values(stored: StoredTemplate, hook: TemplateWebhook) -> dict[str, Any]:
    components = [dict(c) for c in stored.components]
    kinds = [c.get("type") for c in components]

    def put(kind: str, text: str, **extra: Any) -> None:
        if kind in kinds:
            components[kinds.index(kind)]["text"] = text
        else:
            components.append({"type": kind, "text": text, **extra})
            kinds.append(kind)

    if hook.body_text:
        put("BODY", hook.body_text)
    if hook.header_text:
        put("HEADER", hook.header_text, format="TEXT")
    if hook.footer_text:
        put("FOOTER", hook.footer_text)
    if hook.buttons:
        buttons = [{k: v for k, v in b.items() if v} for b in hook.buttons]
        if "BUTTONS" in kinds:
            components[kinds.index("BUTTONS")]["buttons"] = buttons
        else:
            components.append({"type": "BUTTONS", "buttons": buttons})
    order = {"HEADER": 0, "BODY": 1, "FOOTER": 2, "BUTTONS": 3}
    components.sort(key=lambda c: order.get(str(c.get("type")), 4))
    fmt = TemplateParameterFormat(stored.parameter_format)
    body = _body_variables(components, fmt)
    previous = stored.variables
    variables = (
        list(previous)
        if fmt is TemplateParameterFormat.POSITIONAL and len(previous) == len(body)
        else list(body)
    )
    values: dict[str, Any] = {}
    if components != [dict(c) for c in stored.components]:
        values["components"] = components
    if variables != list(previous):
        values["variables"] = variables
    return values
