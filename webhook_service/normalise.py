"""Meta webhook bodies -> normalised updates (pure: bytes in, dataclasses out).

Every entry, every change and every item of a batch is read. What comes out:

* ``statuses[]`` of a ``messages`` change: one :class:`Status` each, whatever its status value
  (unknown ones are recorded by ApplyStatus and ignored there);
* ``user_preferences[]`` of a ``user_preferences`` change, and the older shape of the same event
  (a ``messages[]`` item of type ``system`` with ``system.type = user_preference_changed``):
  one :class:`Preference` each;
* inbound ``messages[]`` of type ``text``: one :class:`InboundText` each (checked for stop
  keywords by the dispatch service); other inbound types carry nothing for us;
* template and account notifications (``message_template_status_update``, ...) and value-level
  ``errors[]`` are known shapes that carry no updates.

A body that is not JSON is flagged ``invalid_json``. A body that is JSON but not this envelope,
has no change we know, or has an item we cannot read (a status without an id, a timestamp that
is not a number...) is flagged ``unknown_shape`` as a whole, so nothing is half-applied; it stays
stored and can be forwarded again after a fix (set its state back to ``pending``). Unknown
*fields* inside known items are ignored, so additive changes on Meta's side do not break us.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.vocabulary import ReceiptFlag

OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"
PREFERENCES_FIELD = "user_preferences"
INFORMATIONAL_FIELDS = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
        "account_update",
        "account_alerts",
        "account_review_update",
        "phone_number_quality_update",
        "phone_number_name_update",
        "business_capability_update",
        "security",
    }
)
"""Documented change fields that we recognise but that carry nothing for the status path."""

MAX_TIMESTAMP = 10**11  # year ~5138: anything larger is not Unix seconds
MAX_UPDATES = 5_000
"""More updates than this in one body is not a Meta webhook (Meta batches at most 1,000); such a
body is flagged unknown_shape rather than sent as one oversized ApplyStatus call."""


class ShapeError(ValueError):
    """The body is JSON but not a shape we can read."""


@dataclass(frozen=True, slots=True)
class ProviderError:
    """One entry of ``errors[]``."""

    code: int
    title: str
    details: str


@dataclass(frozen=True, slots=True)
class Status:
    """One ``statuses[]`` item."""

    phone_number_id: str
    provider_message_id: str
    status: str
    timestamp: int
    recipient_id: str = ""
    callback_data: str = ""
    errors: tuple[ProviderError, ...] = ()
    pricing: Pricing | None = None


@dataclass(frozen=True, slots=True)
class Pricing:
    """A status's ``pricing`` block, as reported (interpreted by the dispatch service)."""

    billable: bool
    category: str
    pricing_model: str
    type: str


def _pricing(raw: Any) -> Pricing | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("category"), str):
        return None
    return Pricing(
        billable=raw.get("billable") is True,
        category=raw["category"],
        pricing_model=str(raw.get("pricing_model") or ""),
        type=str(raw.get("type") or ""),
    )


@dataclass(frozen=True, slots=True)
class Preference:
    """One marketing preference change."""

    phone_number_id: str
    wa_id: str
    category: str
    value: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class InboundText:
    """One inbound text message."""

    phone_number_id: str
    from_wa_id: str
    message_id: str
    text: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class Normalised:
    """What a receipt carries, or why it is flagged."""

    flag: ReceiptFlag | None = None
    problem: str = ""
    phone_number_ids: tuple[str, ...] = ()
    statuses: tuple[Status, ...] = ()
    preferences: tuple[Preference, ...] = ()
    inbound_texts: tuple[InboundText, ...] = ()
    value_errors: tuple[ProviderError, ...] = ()

    @property
    def update_count(self) -> int:
        """How many updates ApplyStatus gets from this receipt."""
        return len(self.statuses) + len(self.preferences) + len(self.inbound_texts)


@dataclass
class _Collector:
    phone_number_ids: dict[str, None] = field(default_factory=dict)  # ordered set
    statuses: list[Status] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)
    inbound_texts: list[InboundText] = field(default_factory=list)
    value_errors: list[ProviderError] = field(default_factory=list)
    known_changes: int = 0


# --- small readers ------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShapeError(f"{where} is not an object")
    return value


def _list(value: Any, where: str, *, required: bool = False) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ShapeError(f"{where} is not a list")
    return value


def _text(item: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = item.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ShapeError(f"{where}.{key} is missing or not a string")
    return value.strip()


def _timestamp(item: dict[str, Any], where: str) -> int:
    value = item.get("timestamp")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < MAX_TIMESTAMP:
        raise ShapeError(f"{where}.timestamp is not Unix seconds")
    return value


def _errors(value: Any, where: str) -> tuple[ProviderError, ...]:
    errors = []
    for n, raw in enumerate(_list(value, where)):
        item = _object(raw, f"{where}[{n}]")
        code = item.get("code")
        if isinstance(code, str) and code.strip().isdigit():
            code = int(code)
        if not isinstance(code, int) or isinstance(code, bool):
            raise ShapeError(f"{where}[{n}].code is not a number")
        data = item.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        errors.append(
            ProviderError(
                code=code,
                title=str(item.get("title") or ""),
                details=str(details or item.get("message") or ""),
            )
        )
    return tuple(errors)


def _phone_number_id(value: dict[str, Any], where: str) -> str:
    metadata = _object(value.get("metadata"), f"{where}.metadata")
    return _text(metadata, "phone_number_id", f"{where}.metadata")


# --- changes ------------------------------------------------------------------------------------


def _status(raw: Any, pnid: str, where: str) -> Status:
    item = _object(raw, where)
    return Status(
        phone_number_id=pnid,
        provider_message_id=_text(item, "id", where),
        status=_text(item, "status", where).lower(),
        timestamp=_timestamp(item, where),
        recipient_id=_text(item, "recipient_id", where, required=False),
        callback_data=_text(item, "biz_opaque_callback_data", where, required=False),
        errors=_errors(item.get("errors"), f"{where}.errors"),
        pricing=_pricing(item.get("pricing")),
    )


def _inbound(raw: Any, pnid: str, where: str, out: _Collector) -> None:
    item = _object(raw, where)
    kind = _text(item, "type", where, required=False)
    if kind == "text":
        text = _object(item.get("text"), f"{where}.text")
        body = text.get("body")
        if not isinstance(body, str):
            raise ShapeError(f"{where}.text.body is not a string")
        out.inbound_texts.append(
            InboundText(
                phone_number_id=pnid,
                from_wa_id=_text(item, "from", where),
                message_id=_text(item, "id", where, required=False),
                text=body,
                timestamp=_timestamp(item, where),
            )
        )
    elif kind == "system":
        system = _object(item.get("system"), f"{where}.system")
        if system.get("type") == "user_preference_changed":
            out.preferences.append(
                Preference(
                    phone_number_id=pnid,
                    wa_id=_text(item, "from", where),
                    category="marketing_messages",
                    value=_text(system, "marketing", f"{where}.system").lower(),
                    timestamp=_timestamp(item, where),
                )
            )


def _messages_change(value: dict[str, Any], where: str, out: _Collector) -> None:
    statuses = _list(value.get("statuses"), f"{where}.statuses")
    messages = _list(value.get("messages"), f"{where}.messages")
    out.value_errors.extend(_errors(value.get("errors"), f"{where}.errors"))
    if not statuses and not messages:
        return
    pnid = _phone_number_id(value, where)
    out.phone_number_ids[pnid] = None
    out.statuses.extend(
        _status(raw, pnid, f"{where}.statuses[{n}]") for n, raw in enumerate(statuses)
    )
    for n, raw in enumerate(messages):
        _inbound(raw, pnid, f"{where}.messages[{n}]", out)


def _preferences_change(value: dict[str, Any], where: str, out: _Collector) -> None:
    items = _list(value.get("user_preferences"), f"{where}.user_preferences", required=True)
    pnid = _phone_number_id(value, where)
    out.phone_number_ids[pnid] = None
    for n, raw in enumerate(items):
        item = _object(raw, f"{where}.user_preferences[{n}]")
        at = f"{where}.user_preferences[{n}]"
        out.preferences.append(
            Preference(
                phone_number_id=pnid,
                wa_id=_text(item, "wa_id", at),
                category=_text(item, "category", at),
                value=_text(item, "value", at).lower(),
                timestamp=_timestamp(item, at),
            )
        )


def _change(raw: Any, where: str, out: _Collector) -> None:
    change = _object(raw, where)
    name = change.get("field")
    if name == MESSAGES_FIELD:
        _messages_change(_object(change.get("value"), f"{where}.value"), where, out)
    elif name == PREFERENCES_FIELD:
        _preferences_change(_object(change.get("value"), f"{where}.value"), where, out)
    elif name not in INFORMATIONAL_FIELDS:
        return  # a field we do not subscribe to: ignored, it does not make the body known
    out.known_changes += 1


def _entries(payload: Any) -> Iterable[tuple[int, dict[str, Any]]]:
    body = _object(payload, "body")
    if body.get("object") != OBJECT:
        raise ShapeError(f"body.object is not {OBJECT!r}")
    for n, raw in enumerate(_list(body.get("entry"), "body.entry", required=True)):
        yield n, _object(raw, f"entry[{n}]")


def normalise(body: bytes) -> Normalised:
    """Read a verified webhook body; never raises."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        return Normalised(flag=ReceiptFlag.INVALID_JSON, problem=type(error).__name__)
    except RecursionError:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="nested too deeply")
    out = _Collector()
    try:
        for n, entry in _entries(payload):
            changes = _list(entry.get("changes"), f"entry[{n}].changes", required=True)
            for m, change in enumerate(changes):
                _change(change, f"entry[{n}].changes[{m}]", out)
    except ShapeError as error:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem=str(error)[:300])
    if out.known_changes == 0:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="no change this system reads")
    if len(out.statuses) + len(out.preferences) + len(out.inbound_texts) > MAX_UPDATES:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="too many updates in one body")
    return Normalised(
        phone_number_ids=tuple(out.phone_number_ids),
        statuses=tuple(out.statuses),
        preferences=tuple(out.preferences),
        inbound_texts=tuple(out.inbound_texts),
        value_errors=tuple(out.value_errors),
    )
