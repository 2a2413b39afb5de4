"""Read models: what the reads return, as plain values (no ORM objects, no SQL).

Persistence builds these from rows; use cases pass them on; ``grpc_api`` maps them to protobuf
without importing persistence or ORM models.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from common.vocabulary import ImportRowOutcome, MessageState, RejectionReason, RunState


@dataclass(frozen=True)
class RunRecord:
    """A run as stored."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    template_id: uuid.UUID
    language: str
    precheck_id: uuid.UUID
    actor_id: uuid.UUID
    idempotency_key: str
    sender_phone_number_id: str
    state: RunState
    pause_reason: str | None
    total_count: int
    eligible_count: int
    blocked_count: int
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class MessageView:
    """One message as the listings show it."""

    id: uuid.UUID
    run_id: uuid.UUID
    position: int
    guest_unit_id: uuid.UUID
    person_id: uuid.UUID | None
    phone_e164: str | None
    state: MessageState
    reason: RejectionReason | None
    provider_message_id: str | None
    error_code: int | None
    error_title: str | None
    attempt_count: int
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None


@dataclass(frozen=True)
class GuestUnitView:
    """A household as listed to operators."""

    id: uuid.UUID
    name: str
    contact_person_id: uuid.UUID | None
    contact_phone_e164: str | None
    tags: tuple[str, ...]
    side: str | None
    member_count: int
    active: bool


@dataclass(frozen=True)
class ImportRowView:
    """One stored import row."""

    row_number: int
    outcome: ImportRowOutcome
    phone_e164: str | None
    person_id: uuid.UUID | None
    message: str
