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
