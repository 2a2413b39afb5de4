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

Shape = Literal["v24", "v23"]


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
    """A ``statuses[]`` item. ``v24`` carries ``pricing`` on ``sent`` only (reference §3.3 a/b);
    ``v23`` carries ``conversation`` and ``pricing`` on ``sent`` and on the first of
    delivered/read (§3.2), ``expiration_timestamp`` on ``sent`` only."""
    item: dict[str, Any] = {
        "id": event.wamid,
        "status": event.status,
        "timestamp": str(event.timestamp),
        "recipient_id": event.recipient_id,
    }
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
        item["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": event.category,
        }
    if event.error is not None:
        item["errors"] = [webhook_error(event.error)]
    return item


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
) -> FieldChange:
    """An inbound text message from a user (reference §3.3 f)."""
    return FieldChange(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(display_phone_number, phone_number_id),
            "contacts": [{"profile": {"name": profile_name}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": message_id,
                    "timestamp": str(timestamp),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        },
    )


def user_preferences_change(
    *,
    display_phone_number: str,
    phone_number_id: str,
    wa_id: str,
    value: Literal["stop", "resume"],
    timestamp: int,
) -> FieldChange:
    """A marketing-messages stop or resume (reference §3.3 g; ``timestamp`` is an integer)."""
    detail = (
        "User requested to stop marketing messages"
        if value == "stop"
        else "User requested to resume marketing messages"
    )
    return FieldChange(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(display_phone_number, phone_number_id),
            "contacts": [{"wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": detail,
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": timestamp,
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
    by_phone: dict[str, list[dict[str, Any]]] = {}
    changes: list[dict[str, Any]] = []
    timed_entries: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, StatusEvent):
            by_phone.setdefault(item.phone_number_id, []).append(status_object(item, shape))
        elif item.entry_time is not None:
            change = {"field": item.field, "value": item.value}
            timed_entries.append({"id": waba_id, "time": item.entry_time, "changes": [change]})
        else:
            changes.append({"field": item.field, "value": item.value})
    status_changes = [
        {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": metadata(display_phone_number, phone_number_id),
                "statuses": chunk,
            },
        }
        for phone_number_id, statuses in by_phone.items()
        for chunk in _chunks(statuses, statuses_per_change)
    ]
    entries = [
        {"id": waba_id, "changes": chunk}
        for chunk in _chunks([*status_changes, *changes], changes_per_entry)
    ]
    return {"object": "whatsapp_business_account", "entry": [*entries, *timed_entries]}


def encode(payload: object) -> bytes:
    """Compact JSON with non-ASCII escaped (``\\u00e4``), as Meta sends it (reference §4)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
