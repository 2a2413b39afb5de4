"""Helpers shared by the status-path tests and bench: seeding runs with sent messages, building
Meta webhook bodies from the documented shapes, and signing them with an independent HMAC.

Seeding writes rows directly with SQL (workspace, member, event, template, precheck, run,
messages), so these tests do not depend on StartRun or the dispatcher.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

SENDER = "106540352242922"
WABA_ID = "102290129340398"


@dataclass(frozen=True)
class SeededRun:
    """A run whose messages are in a given state with known provider ids."""

    workspace_id: uuid.UUID
    run_id: uuid.UUID
    message_ids: list[uuid.UUID]
    wamids: list[str | None]
    phones: list[str]


def _insert(conn: psycopg.Connection[Any], table: str, **values: Any) -> uuid.UUID:
    values.setdefault("id", uuid.uuid4())
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values()))
    return uuid.UUID(str(values["id"]))


def seed_workspace(conn: psycopg.Connection[Any], sender: str = SENDER) -> uuid.UUID:
    """A workspace sending from `sender`."""
    return _insert(
        conn,
        "workspace",
        name=f"W {uuid.uuid4().hex[:6]}",
        default_region="US",
        sender_phone_number_id=sender,
    )


def seed_run(
    database_url: str,
    count: int,
    *,
    sender: str = SENDER,
    state: str = "sent",
    with_wamids: bool = True,
    workspace_id: uuid.UUID | None = None,
    phone_base: int = 15550100000,
) -> SeededRun:
    """A run of `count` messages in `state` (provider ids `wamid.<run>.<n>` unless told not)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        workspace = workspace_id or seed_workspace(conn, sender)
        member = _insert(
            conn, "membership", workspace_id=workspace, display_name="A", role="parent_admin"
        )
        unit = _insert(conn, "guest_unit", workspace_id=workspace, name=f"H {uuid.uuid4().hex}")
        event = _insert(conn, "event", workspace_id=workspace, name="Party", starts_at="2030-01-01")
        template = _insert(
            conn,
            "template",
            workspace_id=workspace,
            name=f"invite_{uuid.uuid4().hex[:8]}",
            language="en_US",
            category="MARKETING",
            status="APPROVED",
        )
        precheck = _insert(
            conn,
            "precheck",
            workspace_id=workspace,
            event_id=event,
            template_id=template,
            actor_id=member,
            audience_hash="h",
            total_count=count,
            eligible_count=count,
            blocked_count=0,
            expires_at="2030-01-01",
        )
        run = _insert(
            conn,
            "invite_send_run",
            workspace_id=workspace,
            event_id=event,
            template_id=template,
            language="en_US",
            precheck_id=precheck,
            actor_id=member,
            idempotency_key=uuid.uuid4().hex,
            sender_phone_number_id=sender,
            state="dispatching",
        )
        ids = [uuid.uuid4() for _ in range(count)]
        phones = [f"+{phone_base + n}" for n in range(count)]
        wamids = [f"wamid.{run.hex[:8]}.{n}" if with_wamids else None for n in range(count)]
        sent_at = datetime(2030, 1, 1, tzinfo=UTC) if state == "sent" else None
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO invite_message (id, run_id, workspace_id, event_id, position,"
                " guest_unit_id, phone_e164, state, provider_message_id, sent_at, sending_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
                [
                    (ids[n], run, workspace, event, n, unit, phones[n], state, wamids[n], sent_at)
                    for n in range(count)
                ],
            )
    return SeededRun(workspace, run, ids, wamids, phones)


# --- webhook bodies ----------------------------------------------------------------------------


def status_item(
    wamid: str,
    status: str,
    timestamp: int,
    *,
    recipient_id: str = "16505551234",
    callback_data: str | None = None,
    errors: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """One `statuses[]` item as Meta documents it (timestamp as a string)."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if errors:
        item["errors"] = list(errors)
    return item


def meta_error(code: int, title: str = "Message undeliverable") -> dict[str, Any]:
    """One `errors[]` entry."""
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": f"details of {code}"},
        "href": "/documentation/business-messaging/whatsapp/support/error-codes",
    }


def change(value: dict[str, Any], field: str = "messages", sender: str = SENDER) -> dict[str, Any]:
    """One `changes[]` item with metadata for `sender`."""
    body = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": sender},
        **value,
    }
    return {"field": field, "value": body}


def envelope(changes: Iterable[dict[str, Any]], entries: int = 1) -> dict[str, Any]:
    """A whole webhook body; `changes` are spread round-robin over `entries` entries."""
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(entries)]
    for n, item in enumerate(changes):
        buckets[n % entries].append(item)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": b} for b in buckets if b],
    }


def statuses_body(items: Sequence[dict[str, Any]], sender: str = SENDER) -> bytes:
    """A body carrying `items` as one change's statuses."""
    return encode(envelope([change({"statuses": list(items)}, sender=sender)]))


def encode(payload: dict[str, Any]) -> bytes:
    """Serialise like Meta: compact JSON with non-ASCII escaped."""
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 header value for `body` (written independently of the service)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
