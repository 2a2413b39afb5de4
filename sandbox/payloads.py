"""JSON the sandbox sends: the send response (reference §1) and webhook payloads (§3.2/§3.3).

Builders are pure functions over small event values; :func:`build_payload` packs a batch of
due events into one ``whatsapp_business_account`` payload, :func:`encode` and :func:`sign`
produce the exact bytes and their ``X-Hub-Signature-256`` header (§4).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sandbox.errors import GraphError, webhook_error

Shape = Literal["v26", "v24", "v23"]
Recipients = Literal["phone", "user_id_only", "group"]
CONTACT_STATUSES = frozenset({"sent", "delivered", "read", "played"})
GRAPH_API_VERSION = "v26.0"
"""The Graph API version whose webhook shapes the sandbox follows by default (``shape: v26``)."""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One ``statuses[]`` item about an outbound message."""

    wamid: str
    status: str
    timestamp: int
    recipient_id: str
    phone_number_id: str
    callback_data: str | None
    category: str
    """Template category, lowercase: what ``pricing.category`` and ``origin.type`` say."""
    billable: bool
    conversation_id: str
    conversation_expires: int
    error: GraphError | None = None
    user_id: str = ""
    """The recipient's business-scoped user id (``contacts[].user_id``, ``recipient_user_id``)."""
    recipients: Recipients = "phone"
    """How the webhook names the recipient: by phone (with ``contacts``), by user id only (no
    phone anywhere), or as a participant of a group."""
    group_id: str = ""
    """``recipients: group``: the group id in ``recipient_id``."""
    profile_name: str = ""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A non-status change: inbound messages, ``user_preferences``, template status updates."""

    field: str
    value: dict[str, Any]
    entry_time: int | None = None
    """``entry[].time``, which ``message_template_status_update`` entries carry."""


WebhookItem = StatusEvent | FieldChange


def send_response(to: str, wa_id: str, wamid: str) -> dict[str, Any]:
    """The HTTP 200 body of an accepted template send."""
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": wa_id}],
        "messages": [{"id": wamid, "message_status": "accepted"}],
    }


def status_object(event: StatusEvent, shape: Shape) -> dict[str, Any]:
    """A ``statuses[]`` item.

    * ``v26`` (default): no ``conversation``; the 2025 ``pricing`` block (``pricing_model``
      ``PMP``, ``type``, ``category``; no deprecated ``billable``) on ``sent`` and on the first
      of delivered/read (reference meta-2026 §5.4, WCA §3.2);
    * ``v24``: ``pricing`` (with ``billable``) on ``sent`` only (WCA §3.3 a/b);
    * ``v23``: ``conversation`` and ``pricing`` on ``sent`` and on the first of delivered/read,
      ``expiration_timestamp`` on ``sent`` only.

    The recipient is named as ``event.recipients`` says (meta-2026 §1.4): ``recipient_id`` (the
    phone); ``recipient_user_id`` only (no phone); or a group's id with the participant's phone
    and user id.
    """
    item: dict[str, Any] = {
        "id": event.wamid,
        "status": event.status,
        "timestamp": str(event.timestamp),
    }
    if event.recipients == "user_id_only":
        item["recipient_user_id"] = event.user_id
    elif event.recipients == "group":
        item["recipient_id"] = event.group_id
        item["recipient_type"] = "group"
        item["recipient_participant_id"] = event.recipient_id
        item["recipient_participant_user_id"] = event.user_id
    else:
        item["recipient_id"] = event.recipient_id
    if event.callback_data is not None:
        item["biz_opaque_callback_data"] = event.callback_data
    with_pricing = event.status == "sent" if shape == "v24" else event.billable
    if shape == "v23" and event.billable:
        conversation: dict[str, Any] = {"id": event.conversation_id}
        if event.status == "sent":
            conversation["expiration_timestamp"] = str(event.conversation_expires)
        conversation["origin"] = {"type": event.category}
        item["conversation"] = conversation
    if with_pricing:
        category = f"group_{event.category}" if event.recipients == "group" else event.category
        pricing: dict[str, Any] = {"pricing_model": "PMP", "type": "regular", "category": category}
        if shape != "v26":
            pricing = {"billable": True, **pricing}
        item["pricing"] = pricing
    if event.error is not None:
        item["errors"] = [webhook_error(event.error)]
    return item


def contact_object(event: StatusEvent, shape: Shape) -> dict[str, Any] | None:
    """The ``contacts[]`` entry a status brings along, or None: Meta sends contacts with
    ``sent``, ``delivered`` and ``read``, never with ``failed`` (meta-2026 §1.4); group statuses
    only with delivered/read. ``played`` (a voice message's first play, a kind of read) is
    treated like ``read`` (derived: Meta's field list does not name it). Shapes before ``v26``
    had no contacts on statuses."""
    if shape != "v26" or event.status not in CONTACT_STATUSES or not event.user_id:
        return None
    if event.recipients == "group" and event.status == "sent":
        return None
    if event.recipients == "user_id_only":
        return user_contact(event.profile_name, "", event.user_id)
    return user_contact(event.profile_name, event.recipient_id, event.user_id)


def user_contact(profile_name: str, wa_id: str, user_id: str) -> dict[str, Any]:
    """A ``contacts[]`` entry: ``wa_id`` only when the phone is shared, ``user_id`` always."""
    contact: dict[str, Any] = {"profile": {"name": profile_name or "WhatsApp User"}}
    if wa_id:
        contact["wa_id"] = wa_id
    contact["user_id"] = user_id
    return contact


def metadata(display_phone_number: str, phone_number_id: str) -> dict[str, str]:
    """``value.metadata``."""
    return {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}


def inbound_text_change(
    *,
    display_phone_number: str,
    phone_number_id: str,
    wa_id: str,
    profile_name: str,
    message_id: str,
    text: str,
    timestamp: int,
    user_id: str = "",
    phone_shared: bool = True,
) -> FieldChange:
    """An inbound text message from a user (WCA §3.3 f, meta-2026 §1.5 c): ``from`` (the phone,
    only when shared) and ``from_user_id`` (always, when the user has one)."""
    message: dict[str, Any] = {}
    if phone_shared:
        message["from"] = wa_id
    if user_id:
        message["from_user_id"] = user_id
    message |= {"id": message_id, "timestamp": str(timestamp), "type": "text"}
    message["text"] = {"body": text}
    return FieldChange(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(display_phone_number, phone_number_id),
            "contacts": [_contact(profile_name, wa_id if phone_shared else "", user_id)],
            "messages": [message],
        },
    )


def _contact(profile_name: str, wa_id: str, user_id: str) -> dict[str, Any]:
    if user_id:
        return user_contact(profile_name, wa_id, user_id)
    return {"profile": {"name": profile_name or "WhatsApp User"}, "wa_id": wa_id}


def user_preferences_change(
    *,
    display_phone_number: str,
    phone_number_id: str,
    wa_id: str,
    value: Literal["stop", "resume"],
    timestamp: int,
    user_id: str = "",
    phone_shared: bool = True,
) -> FieldChange:
    """A marketing-messages stop or resume (WCA §3.3 g; ``timestamp`` is an integer), with
    ``user_id`` beside ``wa_id`` (or instead of it) as in meta-2026 §1.4."""
    detail = (
        "User requested to stop marketing messages"
        if value == "stop"
        else "User requested to resume marketing messages"
    )
    shown_wa_id = wa_id if phone_shared else ""
    contact: dict[str, Any] = {}
    if shown_wa_id:
        contact["wa_id"] = shown_wa_id
    if user_id:
        contact["user_id"] = user_id
    item: dict[str, Any] = dict(contact)
    item |= {
        "detail": detail,
        "category": "marketing_messages",
        "value": value,
        "timestamp": timestamp,
    }
    return FieldChange(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(display_phone_number, phone_number_id),
            "contacts": [contact],
            "user_preferences": [item],
        },
    )


def call_change(
    *,
    display_phone_number: str,
    phone_number_id: str,
    wa_id: str,
    user_id: str,
    profile_name: str,
    call_id: str,
    event: Literal["connect", "terminate"],
    timestamp: int,
) -> FieldChange:
    """A ``calls`` webhook: a user calls the business number (``connect``), or the call ends
    (``terminate``, with status, start and end times and duration)."""
    call: dict[str, Any] = {
        "id": call_id,
        "from": wa_id,
        "from_user_id": user_id,
        "to": display_phone_number,
        "event": event,
        "timestamp": str(timestamp),
        "direction": "USER_INITIATED",
    }
    if event == "connect":
        call["session"] = {"sdp_type": "offer", "sdp": "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"}
    else:
        call |= {
            "status": "COMPLETED",
            "start_time": str(timestamp - 42),
            "end_time": str(timestamp),
            "duration": 42,
        }
    return FieldChange(
        "calls",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(display_phone_number, phone_number_id),
            "contacts": [user_contact(profile_name, wa_id, user_id)],
            "calls": [call],
        },
    )


def echo_change(
    *,
    display_phone_number: str,
    phone_number_id: str,
    wa_id: str,
    user_id: str,
    profile_name: str,
    message_id: str,
    text: str,
    timestamp: int,
) -> FieldChange:
    """An ``smb_message_echoes`` webhook: the business wrote to a user from the WhatsApp
    Business app (coexistence)."""
    return FieldChange(
        "smb_message_echoes",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(display_phone_number, phone_number_id),
            "contacts": [user_contact(profile_name, wa_id, user_id)],
            "message_echoes": [
                {
                    "from": display_phone_number,
                    "to": wa_id,
                    "to_user_id": user_id,
                    "id": message_id,
                    "timestamp": str(timestamp),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        },
    )


def template_status_change(
    *,
    template_id: int,
    name: str,
    language: str,
    category: str,
    event: str,
    reason: str,
    timestamp: int,
) -> FieldChange:
    """A ``message_template_status_update`` (reference §8)."""
    return FieldChange(
        "message_template_status_update",
        {
            "event": event,
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
            "reason": reason,
            "message_template_category": category,
        },
        entry_time=timestamp,
    )


def template_quality_change(
    *, template_id: int, name: str, language: str, previous: str, new: str, timestamp: int
) -> FieldChange:
    """A ``message_template_quality_update`` (reference meta-2026 §3)."""
    return FieldChange(
        "message_template_quality_update",
        {
            "previous_quality_score": previous,
            "new_quality_score": new,
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
        },
        entry_time=timestamp,
    )


def template_category_change(
    *, template_id: int, name: str, language: str, previous: str, new: str, timestamp: int
) -> FieldChange:
    """A completed ``template_category_update`` (reference meta-2026 §3)."""
    return FieldChange(
        "template_category_update",
        {
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
            "previous_category": previous,
            "new_category": new,
        },
        entry_time=timestamp,
    )


def build_payload(
    items: Sequence[WebhookItem],
    *,
    waba_id: str,
    display_phone_number: str,
    shape: Shape,
    statuses_per_change: int,
    changes_per_entry: int,
) -> dict[str, Any]:
    """Pack a batch into one payload: statuses grouped into ``messages`` changes per phone number
    id (at most ``statuses_per_change`` each), changes into entries (at most
    ``changes_per_entry`` each); a change with an ``entry_time`` gets an entry of its own."""
    by_phone: dict[str, list[StatusEvent]] = {}
    changes: list[dict[str, Any]] = []
    timed_entries: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, StatusEvent):
            by_phone.setdefault(item.phone_number_id, []).append(item)
        elif item.entry_time is not None:
            change = {"field": item.field, "value": item.value}
            timed_entries.append({"id": waba_id, "time": item.entry_time, "changes": [change]})
        else:
            changes.append({"field": item.field, "value": item.value})
    status_changes = [
        {
            "field": "messages",
            "value": _statuses_value(chunk, display_phone_number, phone_number_id, shape),
        }
        for phone_number_id, statuses in by_phone.items()
        for chunk in _chunks(statuses, statuses_per_change)
    ]
    entries = [
        {"id": waba_id, "changes": chunk}
        for chunk in _chunks([*status_changes, *changes], changes_per_entry)
    ]
    return {"object": "whatsapp_business_account", "entry": [*entries, *timed_entries]}


def _statuses_value(
    events: list[StatusEvent], display_phone_number: str, phone_number_id: str, shape: Shape
) -> dict[str, Any]:
    """A ``messages`` change value: ``contacts`` (one per person named, when any status brings
    one) before ``statuses``, as Meta orders them."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": metadata(display_phone_number, phone_number_id),
    }
    contacts: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        contact = contact_object(event, shape)
        if contact is not None:
            contacts.setdefault((contact.get("wa_id", ""), contact["user_id"]), contact)
    if contacts:
        value["contacts"] = list(contacts.values())
    value["statuses"] = [status_object(event, shape) for event in events]
    return value


def encode(payload: object) -> bytes:
    """Compact JSON with non-ASCII escaped (``\\u00e4``), as Meta sends it (reference §4)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
