"""Meta webhook bodies -> normalised updates (pure: bytes in, dataclasses out).

Every entry, every change and every item of a batch is read, **one by one**: an item that cannot
be read is recorded (its path and why) and the others are still read, so one bad item never
costs the rest of the body. What comes out:

* ``statuses[]`` of a ``messages`` change: one :class:`Status` each, whatever its status value
  (unknown ones are recorded by ApplyStatus and ignored there), identified by phone
  (``recipient_id``), by business-scoped user id (``recipient_user_id``, parent id in any of its
  three spellings) or both; group statuses (``recipient_type: group``) with their participant
  ids; each with the ``contacts[]`` entries (``wa_id``/``user_id``/``username``) that name it;
* ``user_preferences[]`` of a ``user_preferences`` change, and the older shape of the same event
  (a ``messages[]`` item of type ``system`` with ``system.type = user_preference_changed``):
  one :class:`Preference` each, by ``wa_id``, ``user_id`` or both;
* inbound ``messages[]`` of type ``text``: one :class:`InboundText` each (checked for stop
  keywords by the dispatch service), from ``from``, ``from_user_id`` or both.
* template notifications (``message_template_status_update``, ``..._quality_update``,
  ``template_category_update``, ``message_template_components_update``): one
  :class:`TemplateUpdate` each, keyed by the WABA id (``entry[].id``) and ordered by
  ``entry[].time``;

Documented changes and items that carry nothing for this system (``calls``,
``smb_message_echoes``, template, account and phone-number notifications, inbound media,
buttons, identity-change ``system`` messages...) are recorded as *ignored* notes. A change field
nobody documents is *unreadable* (``unrecognised change field``).

The receipt's flag:

* ``invalid_json``: not JSON; ``unknown_shape``: JSON but not the envelope, or not one change in
  it that we recognise (read or ignored), or more than :data:`MAX_UPDATES` updates;
* ``unreadable_items``: some items could not be read (``notes`` say which and why); every
  readable update is still applied. Re-forwarding the receipt after a fix applies the rest
  (ApplyStatus is idempotent);
* ``ignored``: only known changes, none carrying an update;
* none: updates to apply (ignored items beside them are still noted).

Unknown *fields* inside known items are ignored, so additive changes on Meta's side do not
break us; an empty string is read as absent (Meta's drafts allowed ``wa_id: ""``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from common.vocabulary import ReceiptFlag

OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"
PREFERENCES_FIELD = "user_preferences"
LIMIT_FIELDS = frozenset({"business_capability_update", "phone_number_quality_update"})
"""Changes that may announce the portfolio messaging limit (reference meta-2026 §5.1)."""
IGNORED_FIELDS: dict[str, str] = {
    "account_alerts": "account alert (messaging limit, capability eligibility)",
    "account_review_update": "account review decision",
    "account_settings_update": "account settings change",
    "account_update": "account event (ban, verification, pricing tier, partner change)",
    "automatic_events": "automatic conversion events (ads)",
    "business_status_update": "business status change",
    "calls": "voice call events and call statuses (this system never calls)",
    "flows": "WhatsApp Flows status and endpoint alerts",
    "group_lifecycle_update": "group created or deleted (this system uses no groups)",
    "group_participants_update": "group membership change (this system uses no groups)",
    "group_settings_update": "group settings change (this system uses no groups)",
    "group_status_update": "group suspended or cleared (this system uses no groups)",
    "history": "coexistence chat history sync",
    "message_echoes": "messages the business sent from another client",
    "messaging_handovers": "conversation handover between apps",
    "partner_solutions": "partner solution status",
    "payment_configuration_update": "payment configuration change",
    "phone_number_name_update": "display name review",
    "security": "two-step verification or PIN change",
    "smb_app_state_sync": "WhatsApp Business app contacts sync",
    "smb_message_echoes": "messages the business sent from the WhatsApp Business app",
    "template_correct_category_detection": "template category correction",
    "tracking_events": "tracking events",
}
"""Documented WhatsApp Business Account change fields that carry nothing for the status path,
and why (the ``ignored`` note says it)."""

PARENT_RECIPIENT_KEYS = ("recipient_parent_user_id", "parent_recipient_user_id", "parent_user_id")
"""The parent user id of a status has three spellings in Meta's and others' docs: accept all."""
KNOWN_INBOUND_TYPES = frozenset(
    {
        "audio", "button", "contacts", "document", "image", "interactive", "location", "order",
        "reaction", "request_welcome", "sticker", "unsupported", "video", "edit", "revoke",
    }
)  # fmt: skip
"""Documented inbound message types other than ``text`` and ``system`` (ignored)."""
KNOWN_SYSTEM_TYPES = frozenset(
    {
        "user_changed_number",
        "user_changed_user_id",
        "customer_changed_number",
        "customer_identity_changed",
        "user_preference_changed",
    }
)
IDENTITY_SYSTEM_TYPES = frozenset(
    {"user_changed_number", "user_changed_user_id", "customer_changed_number"}
)
TEMPLATE_FIELDS = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
    }
)

MAX_TIMESTAMP = 10**11  # year ~5138: anything larger is not Unix seconds
MAX_UPDATES = 5_000
"""More updates than this in one body is not a Meta webhook (Meta batches at most 1,000); such a
body is flagged unknown_shape rather than sent as one oversized ApplyStatus call."""
MAX_PROBLEM = 300

NoteKind = Literal["unreadable", "ignored"]


class ShapeError(ValueError):
    """The body (or one item of it) is JSON but not a shape we can read."""


@dataclass(frozen=True, slots=True)
class ProviderError:
    """One entry of ``errors[]``."""

    code: int
    title: str
    details: str


@dataclass(frozen=True, slots=True)
class Contact:
    """One ``contacts[]`` entry: who Meta says the user is (any field may be empty)."""

    wa_id: str = ""
    user_id: str = ""
    parent_user_id: str = ""
    username: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    """One ``statuses[]`` item."""

    phone_number_id: str
    provider_message_id: str
    status: str
    timestamp: int
    recipient_id: str = ""
    """The phone (wa_id) the message went to; for a group status, the group id."""
    callback_data: str = ""
    errors: tuple[ProviderError, ...] = ()
    recipient_user_id: str = ""
    """The business-scoped user id: only when the message was sent to one (§1.4)."""
    recipient_parent_user_id: str = ""
    recipient_type: str = ""
    """``group`` for group statuses, else empty (individual)."""
    participant_id: str = ""
    """Group statuses: the participant's phone (``recipient_participant_id``)."""
    participant_user_id: str = ""
    participant_parent_user_id: str = ""
    contacts: tuple[Contact, ...] = ()
    """The ``contacts[]`` entries naming this recipient (sent/delivered/read only, never failed)."""
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
    user_id: str = ""
    parent_user_id: str = ""


@dataclass(frozen=True, slots=True)
class InboundText:
    """One inbound text message."""

    phone_number_id: str
    from_wa_id: str
    message_id: str
    text: str
    timestamp: int
    from_user_id: str = ""
    from_parent_user_id: str = ""
    username: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    """An item that was not read (``unreadable``) or carries nothing for us (``ignored``)."""

    path: str
    kind: NoteKind
    reason: str
    subject: str = ""
    """For ignored notes, what was ignored (a change field, ``inbound_<type>``, ``system_<type>``):
    a bounded set of values, used as a metric label."""

    def as_json(self) -> dict[str, str]:
        """The note as stored on the receipt."""
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class TemplateUpdate:
    """One template webhook change (reference meta-2026 §3); empty strings when absent."""

    waba_id: str
    field: str
    meta_template_id: str
    name: str
    language: str
    timestamp: int
    values: dict[str, str]
    """event, reason, detail, new_quality, new_category, previous_category, correct_category,
    body_text, header_text, footer_text (those the change carries)."""
    buttons: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MessagingLimitUpdate:
    """Meta announcing the portfolio messaging limit (``max_daily_conversations_per_business``
    as written: an integer or ``TIER_*``; the dispatch service reads it)."""

    waba_id: str
    field: str
    timestamp: int
    limit: str
    event: str = ""


@dataclass(frozen=True, slots=True)
class Normalised:
    """What a receipt carries, and what to flag it with."""

    flag: ReceiptFlag | None = None
    problem: str = ""
    phone_number_ids: tuple[str, ...] = ()
    statuses: tuple[Status, ...] = ()
    preferences: tuple[Preference, ...] = ()
    inbound_texts: tuple[InboundText, ...] = ()
    value_errors: tuple[ProviderError, ...] = ()
    notes: tuple[Note, ...] = ()
    template_updates: tuple[TemplateUpdate, ...] = ()
    limit_updates: tuple[MessagingLimitUpdate, ...] = ()

    @property
    def update_count(self) -> int:
        """How many updates ApplyStatus gets from this receipt."""
        return (
            len(self.statuses)
            + len(self.preferences)
            + len(self.inbound_texts)
            + len(self.template_updates)
            + len(self.limit_updates)
        )

    @property
    def unreadable(self) -> tuple[Note, ...]:
        """Items that could not be read."""
        return tuple(n for n in self.notes if n.kind == "unreadable")

    @property
    def ignored(self) -> tuple[Note, ...]:
        """Known items or changes that carry nothing for us."""
        return tuple(n for n in self.notes if n.kind == "ignored")

    @property
    def whole_body_flagged(self) -> bool:
        """True when nothing in the body can be applied (state ``flagged``)."""
        return self.flag in (ReceiptFlag.INVALID_JSON, ReceiptFlag.UNKNOWN_SHAPE)


@dataclass
class _Collector:
    phone_number_ids: dict[str, None] = field(default_factory=dict)  # ordered set
    statuses: list[Status] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)
    inbound_texts: list[InboundText] = field(default_factory=list)
    value_errors: list[ProviderError] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    template_updates: list[TemplateUpdate] = field(default_factory=list)
    limit_updates: list[MessagingLimitUpdate] = field(default_factory=list)
    known_changes: int = 0

    def unreadable(self, path: str, reason: str) -> None:
        self.notes.append(Note(path, "unreadable", reason[:MAX_PROBLEM]))

    def ignored(self, path: str, reason: str, subject: str) -> None:
        self.notes.append(Note(path, "ignored", reason[:MAX_PROBLEM], subject))


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


def _first_text(item: dict[str, Any], keys: Iterable[str], where: str) -> str:
    for key in keys:
        if value := _text(item, key, where, required=False):
            return value
    return ""


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


def _contacts(value: dict[str, Any], where: str, out: _Collector) -> tuple[Contact, ...]:
    """``value.contacts[]``; a malformed entry is noted and skipped (it only helps matching)."""
    try:
        raw_contacts = _list(value.get("contacts"), f"{where}.contacts")
    except ShapeError as error:
        out.unreadable(f"{where}.contacts", str(error))
        return ()
    contacts = []
    for n, raw in enumerate(raw_contacts):
        at = f"{where}.contacts[{n}]"
        try:
            item = _object(raw, at)
            profile = item.get("profile")
            username = ""
            if isinstance(profile, dict):
                username = _text(profile, "username", f"{at}.profile", required=False)
            contact = Contact(
                wa_id=_text(item, "wa_id", at, required=False),
                user_id=_text(item, "user_id", at, required=False),
                parent_user_id=_text(item, "parent_user_id", at, required=False),
                username=username,
            )
        except ShapeError as error:
            out.unreadable(at, str(error))
            continue
        if contact.wa_id or contact.user_id:
            contacts.append(contact)
    return tuple(contacts)


def _naming(
    contacts: tuple[Contact, ...], wa_ids: Iterable[str], user_ids: Iterable[str]
) -> tuple[Contact, ...]:
    phones = {w for w in wa_ids if w}
    users = {u for u in user_ids if u}
    return tuple(c for c in contacts if c.wa_id in phones or c.user_id in users)


# --- items --------------------------------------------------------------------------------------


def _status(raw: Any, pnid: str, where: str, contacts: tuple[Contact, ...], alone: bool) -> Status:
    item = _object(raw, where)
    recipient_type = _text(item, "recipient_type", where, required=False).lower()
    if recipient_type == "individual":
        recipient_type = ""
    status = Status(
        phone_number_id=pnid,
        provider_message_id=_text(item, "id", where),
        status=_text(item, "status", where).lower(),
        timestamp=_timestamp(item, where),
        recipient_id=_text(item, "recipient_id", where, required=False),
        callback_data=_text(item, "biz_opaque_callback_data", where, required=False),
        errors=_errors(item.get("errors"), f"{where}.errors"),
        recipient_user_id=_text(item, "recipient_user_id", where, required=False),
        recipient_parent_user_id=_first_text(item, PARENT_RECIPIENT_KEYS, where),
        recipient_type=recipient_type,
        participant_id=_text(item, "recipient_participant_id", where, required=False),
        participant_user_id=_text(item, "recipient_participant_user_id", where, required=False),
        participant_parent_user_id=_text(
            item, "recipient_participant_parent_user_id", where, required=False
        ),
        pricing=_pricing(item.get("pricing")),
    )
    if status.recipient_type == "group":
        named = _naming(contacts, [status.participant_id], [status.participant_user_id])
    else:
        named = _naming(contacts, [status.recipient_id], [status.recipient_user_id])
    if not named and alone and status.recipient_type != "group":
        named = contacts  # one status, its contacts: they can only be about it
    return _replace_contacts(status, named)


def _replace_contacts(status: Status, contacts: tuple[Contact, ...]) -> Status:
    return replace(status, contacts=contacts) if contacts else status


def _sender(item: dict[str, Any], where: str, contacts: tuple[Contact, ...]) -> Contact:
    """Who sent an inbound message: ``from`` and/or ``from_user_id``, completed from contacts."""
    wa_id = _text(item, "from", where, required=False)
    user_id = _text(item, "from_user_id", where, required=False)
    parent = _text(item, "from_parent_user_id", where, required=False)
    if not wa_id and not user_id:
        raise ShapeError(f"{where} has neither from nor from_user_id")
    named = _naming(contacts, [wa_id], [user_id])
    contact = named[0] if len(named) == 1 else Contact()
    return Contact(
        wa_id=wa_id or contact.wa_id,
        user_id=user_id or contact.user_id,
        parent_user_id=parent or contact.parent_user_id,
        username=contact.username,
    )


def _inbound(
    raw: Any, pnid: str, where: str, contacts: tuple[Contact, ...], out: _Collector
) -> None:
    item = _object(raw, where)
    kind = _text(item, "type", where, required=False)
    if kind == "text":
        text = _object(item.get("text"), f"{where}.text")
        body = text.get("body")
        if not isinstance(body, str):
            raise ShapeError(f"{where}.text.body is not a string")
        sender = _sender(item, where, contacts)
        out.inbound_texts.append(
            InboundText(
                phone_number_id=pnid,
                from_wa_id=sender.wa_id,
                message_id=_text(item, "id", where, required=False),
                text=body,
                timestamp=_timestamp(item, where),
                from_user_id=sender.user_id,
                from_parent_user_id=sender.parent_user_id,
                username=sender.username,
            )
        )
        return
    if kind == "system":
        system = _object(item.get("system"), f"{where}.system")
        system_type = _text(system, "type", f"{where}.system", required=False)
        if system_type == "user_preference_changed":
            sender = _sender(item, where, contacts)
            out.preferences.append(
                Preference(
                    phone_number_id=pnid,
                    wa_id=sender.wa_id,
                    category="marketing_messages",
                    value=_text(system, "marketing", f"{where}.system").lower(),
                    timestamp=_timestamp(item, where),
                    user_id=sender.user_id,
                    parent_user_id=sender.parent_user_id,
                )
            )
            return
        subject = f"system_{system_type}" if system_type in KNOWN_SYSTEM_TYPES else "system_other"
        if system_type in IDENTITY_SYSTEM_TYPES:
            reason = f"system message {system_type}: identity changes are not applied"
            out.ignored(where, reason, subject)
            return
        out.ignored(where, f"system message {system_type or '(no type)'}", subject)
        return
    subject = f"inbound_{kind}" if kind in KNOWN_INBOUND_TYPES else "inbound_other"
    out.ignored(where, f"inbound {kind or '(no type)'} message: only texts are read", subject)


def _preference(raw: Any, pnid: str, where: str) -> Preference:
    item = _object(raw, where)
    wa_id = _text(item, "wa_id", where, required=False)
    user_id = _text(item, "user_id", where, required=False)
    if not wa_id and not user_id:
        raise ShapeError(f"{where} has neither wa_id nor user_id")
    return Preference(
        phone_number_id=pnid,
        wa_id=wa_id,
        category=_text(item, "category", where),
        value=_text(item, "value", where).lower(),
        timestamp=_timestamp(item, where),
        user_id=user_id,
        parent_user_id=_text(item, "parent_user_id", where, required=False),
    )


# --- changes ------------------------------------------------------------------------------------


def _items(value: dict[str, Any], key: str, where: str, out: _Collector) -> list[Any]:
    try:
        return _list(value.get(key), f"{where}.{key}")
    except ShapeError as error:
        out.unreadable(f"{where}.{key}", str(error))
        return []


def _messages_change(value: dict[str, Any], where: str, out: _Collector) -> None:
    statuses = _items(value, "statuses", where, out)
    messages = _items(value, "messages", where, out)
    try:
        out.value_errors.extend(_errors(value.get("errors"), f"{where}.value.errors"))
    except ShapeError as error:
        out.unreadable(f"{where}.value.errors", str(error))
    if not statuses and not messages:
        if value.get("errors"):
            out.ignored(where, "value-level errors only (logged)", "messages_errors")
        else:
            out.ignored(where, "no statuses or messages", "messages_empty")
        return
    try:
        pnid = _phone_number_id(value, f"{where}.value")
    except ShapeError as error:
        out.unreadable(where, f"{error}: its {len(statuses) + len(messages)} items are not read")
        return
    out.phone_number_ids[pnid] = None
    contacts = _contacts(value, f"{where}.value", out)
    for n, raw in enumerate(statuses):
        at = f"{where}.value.statuses[{n}]"
        try:
            out.statuses.append(_status(raw, pnid, at, contacts, alone=len(statuses) == 1))
        except ShapeError as error:
            out.unreadable(at, str(error))
    for n, raw in enumerate(messages):
        at = f"{where}.value.messages[{n}]"
        try:
            _inbound(raw, pnid, at, contacts, out)
        except ShapeError as error:
            out.unreadable(at, str(error))


def _preferences_change(value: dict[str, Any], where: str, out: _Collector) -> None:
    items = _items(value, "user_preferences", where, out)
    if not items:
        out.ignored(where, "no user_preferences items", "user_preferences_empty")
        return
    try:
        pnid = _phone_number_id(value, f"{where}.value")
    except ShapeError as error:
        out.unreadable(where, f"{error}: its {len(items)} items are not read")
        return
    out.phone_number_ids[pnid] = None
    for n, raw in enumerate(items):
        at = f"{where}.value.user_preferences[{n}]"
        try:
            out.preferences.append(_preference(raw, pnid, at))
        except ShapeError as error:
            out.unreadable(at, str(error))


def _template_change(
    value: dict[str, Any], name: str, entry: dict[str, Any], where: str, out: _Collector
) -> None:
    """A template webhook (WABA-level: no metadata; entry.id is the WABA, entry.time orders it).
    An older copy labels quality updates message_template_status_update: a value carrying
    new_quality_score is read as a quality update whatever its field says."""
    if "new_quality_score" in value:
        name = "message_template_quality_update"
    waba_id = _text(entry, "id", where.split(".")[0])
    at = _timestamp({"timestamp": entry.get("time")}, f"{where.split('.')[0]}.time")
    keys = {
        "event": "event",
        "reason": "reason",
        "new_quality": "new_quality_score",
        "new_category": "new_category",
        "previous_category": "previous_category",
        "correct_category": "correct_category",
        "body_text": "message_template_element",
        "header_text": "message_template_title",
        "footer_text": "message_template_footer",
    }
    values = {ours: str(value[theirs]) for ours, theirs in keys.items() if value.get(theirs)}
    info = value.get("other_info") or value.get("rejection_info")
    if isinstance(info, dict):
        parts = (info.get(k) for k in ("title", "description", "reason", "recommendation"))
        values["detail"] = ": ".join(str(p) for p in parts if p)
    buttons = tuple(
        {
            "type": str(b.get("message_template_button_type") or ""),
            "text": str(b.get("message_template_button_text") or ""),
            "url": str(b.get("message_template_button_url") or ""),
            "phone_number": str(b.get("message_template_button_phone_number") or ""),
        }
        for b in _list(value.get("message_template_buttons"), f"{where}.buttons")
        if isinstance(b, dict)
    )
    out.template_updates.append(
        TemplateUpdate(
            waba_id=waba_id,
            field=name,
            meta_template_id=_text(value, "message_template_id", where, required=False),
            name=_text(value, "message_template_name", where),
            language=_text(value, "message_template_language", where).replace("-", "_"),
            timestamp=at,
            values=values,
            buttons=buttons,
        )
    )


def _limit_change(
    value: dict[str, Any], name: str, entry: dict[str, Any], where: str, out: _Collector
) -> None:
    """A capability or phone number quality change (WABA-level: entry.id is the WABA, entry.time
    orders it). Only its messaging limit is read; one without a limit carries nothing for us."""
    limit = value.get("max_daily_conversations_per_business")
    if limit is None or isinstance(limit, dict | list | bool) or str(limit) == "":
        out.ignored(where, f"{name} without a messaging limit", name)
        return
    top = where.split(".")[0]
    out.limit_updates.append(
        MessagingLimitUpdate(
            waba_id=_text(entry, "id", top),
            field=name,
            timestamp=_timestamp({"timestamp": entry.get("time")}, f"{top}.time"),
            limit=str(limit)[:40],
            event=str(value.get("event") or "")[:60],
        )
    )


def _change(raw: Any, where: str, out: _Collector, entry: dict[str, Any]) -> None:
    if not isinstance(raw, dict):
        out.unreadable(where, f"{where} is not an object")
        return
    change = raw
    name = change.get("field")
    try:
        if isinstance(name, str) and name in TEMPLATE_FIELDS:
            value = _object(change.get("value"), f"{where}.value")
            _template_change(value, name, entry, f"{where}.value", out)
        elif isinstance(name, str) and name in LIMIT_FIELDS:
            value = _object(change.get("value"), f"{where}.value")
            _limit_change(value, name, entry, f"{where}.value", out)
        elif name == MESSAGES_FIELD:
            _messages_change(_object(change.get("value"), f"{where}.value"), where, out)
        elif name == PREFERENCES_FIELD:
            _preferences_change(_object(change.get("value"), f"{where}.value"), where, out)
        elif isinstance(name, str) and name in IGNORED_FIELDS:
            out.ignored(where, f"{name}: {IGNORED_FIELDS[name]}", name)
        else:
            shown = name if isinstance(name, str) else type(name).__name__
            out.unreadable(where, f"unrecognised change field {str(shown)[:60]!r}")
            return
    except ShapeError as error:
        out.unreadable(where, str(error))
    out.known_changes += 1


def _entries(payload: Any) -> list[Any]:
    body = _object(payload, "body")
    if body.get("object") != OBJECT:
        raise ShapeError(f"body.object is not {OBJECT!r}")
    return _list(body.get("entry"), "body.entry", required=True)


def _summary(notes: list[Note]) -> str:
    unreadable = [n for n in notes if n.kind == "unreadable"]
    if not unreadable:
        return ""
    first = unreadable[0]
    more = f" (+{len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
    return f"{first.path}: {first.reason}{more}"[:MAX_PROBLEM]


_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
"""A JSON escape of NUL or of a UTF-16 surrogate: only a body holding one can decode to text
that Postgres (NUL) or protobuf (a lone surrogate) refuses."""


def storable(value: Any) -> Any:
    """`value` with every string made storable: NUL and lone surrogates (which JSON's escapes
    allow, an inbound text may carry, and Postgres or protobuf refuse: the receipt would fail
    every forward and hold back the receipts batched with it) become U+FFFD."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value
        cleaned = value.replace("\x00", "\ufffd")
        return cleaned.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value


def normalise(body: bytes) -> Normalised:
    """Read a verified webhook body; never raises."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        return Normalised(flag=ReceiptFlag.INVALID_JSON, problem=type(error).__name__)
    except RecursionError:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="nested too deeply")
    if _UNSTORABLE_ESCAPE.search(body):
        payload = storable(payload)
    out = _Collector()
    try:
        entries = _entries(payload)
    except ShapeError as error:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem=str(error)[:MAX_PROBLEM])
    for n, raw in enumerate(entries):
        try:
            entry = _object(raw, f"entry[{n}]")
            changes = _list(entry.get("changes"), f"entry[{n}].changes", required=True)
        except ShapeError as error:
            out.unreadable(f"entry[{n}]", str(error))
            continue
        for m, change in enumerate(changes):
            _change(change, f"entry[{n}].changes[{m}]", out, entry)
    notes = tuple(out.notes)
    if out.known_changes == 0:
        problem = _summary(out.notes) or "no change this system reads"
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem=problem, notes=notes)
    updates = (
        len(out.statuses)
        + len(out.preferences)
        + len(out.inbound_texts)
        + len(out.template_updates)
        + len(out.limit_updates)
    )
    if updates > MAX_UPDATES:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="too many updates in one body")
    flag: ReceiptFlag | None = None
    if any(n.kind == "unreadable" for n in notes):
        flag = ReceiptFlag.UNREADABLE_ITEMS
    elif updates == 0:
        flag = ReceiptFlag.IGNORED
    return Normalised(
        flag=flag,
        problem=_summary(out.notes),
        phone_number_ids=tuple(out.phone_number_ids),
        statuses=tuple(out.statuses),
        preferences=tuple(out.preferences),
        inbound_texts=tuple(out.inbound_texts),
        value_errors=tuple(out.value_errors),
        notes=notes,
        template_updates=tuple(out.template_updates),
        limit_updates=tuple(out.limit_updates),
    )
