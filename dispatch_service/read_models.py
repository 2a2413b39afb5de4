"""Read models: what the reads return, as plain values or read-only views (no SQL here).

Persistence builds the dataclasses from rows; the admin records (workspace, member, event,
template, import run, Do-Not-Message entry) are described by read-only protocols that the stored
records satisfy. Use cases pass either on; ``grpc_api`` maps them to protobuf without importing
persistence or ORM models.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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
    send_at: datetime | None = None
    deadline: datetime | None = None
    parent_run_id: uuid.UUID | None = None
    send_window: str | None = None
    next_candidate_position: int | None = None
    """Not None while StartRun is still creating the run's messages (persistence/runs)."""


@dataclass(frozen=True)
class HeldCount:
    """Queued messages held for one reason (quiet hours), and when they are due."""

    reason: str
    count: int
    first_due_at: datetime
    last_due_at: datetime


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
    preferred_language: str | None = None


@dataclass(frozen=True)
class ImportRowView:
    """One stored import row."""

    row_number: int
    outcome: ImportRowOutcome
    phone_e164: str | None
    person_id: uuid.UUID | None
    message: str


class WorkspaceView(Protocol):
    """A workspace as the admin API shows it."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def default_region(self) -> str: ...
    @property
    def sender_phone_number_id(self) -> str: ...
    @property
    def sender_provider(self) -> str: ...
    @property
    def twilio_account_sid(self) -> str | None: ...
    @property
    def waba_id(self) -> str | None: ...


class MemberView(Protocol):
    """A membership as the admin API shows it."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def workspace_id(self) -> uuid.UUID: ...
    @property
    def display_name(self) -> str: ...
    @property
    def role(self) -> str: ...


class EventView(Protocol):
    """An event as the admin API shows it."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def starts_at(self) -> datetime | None: ...
    @property
    def location(self) -> str: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def latitude(self) -> float | None: ...
    @property
    def longitude(self) -> float | None: ...


class TemplateView(Protocol):
    """A template as the admin API shows it."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def variables(self) -> Sequence[str]: ...
    @property
    def status(self) -> str: ...
    @property
    def twilio_content_sid(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def meta_template_id(self) -> str | None: ...
    @property
    def quality(self) -> str | None: ...
    @property
    def parameter_format(self) -> str: ...
    @property
    def components(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def previous_category(self) -> str | None: ...
    @property
    def status_reason(self) -> str | None: ...
    @property
    def synced_at(self) -> datetime | None: ...
    @property
    def deleted_on_meta_at(self) -> datetime | None: ...


class ImportRunView(Protocol):
    """A guest import run with its counters."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def source(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def total_rows(self) -> int: ...
    @property
    def created(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def reactivated(self) -> int: ...
    @property
    def warning_malformed_phone(self) -> int: ...
    @property
    def skipped_no_phone(self) -> int: ...
    @property
    def finished_at(self) -> datetime | None: ...


class DoNotMessageEntryView(Protocol):
    """A Do-Not-Message entry."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def phone_e164(self) -> str | None: ...
    @property
    def provider_user_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def actor_id(self) -> uuid.UUID | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def removed_at(self) -> datetime | None: ...
    @property
    def removed_by(self) -> uuid.UUID | None: ...
    @property
    def removal_reason(self) -> str | None: ...


@dataclass(frozen=True)
class ChangeView:
    """One change of the change stream: a message's or a run's state, from and to."""

    position: int
    kind: str
    run_id: uuid.UUID
    event_id: uuid.UUID
    message_id: uuid.UUID | None
    from_state: str | None
    to_state: str
    reason: str | None
    error_code: int | None
    changed_at: datetime


@dataclass(frozen=True)
class ExportRow:
    """One recipient of a run as exported (outcome, timestamps, reasons, pricing)."""

    id: uuid.UUID
    position: int
    guest_unit_id: uuid.UUID
    person_id: uuid.UUID | None
    phone_e164: str | None
    state: MessageState
    reason: RejectionReason | None
    error_code: int | None
    error_title: str | None
    do_not_message_reason: str | None
    language: str
    pricing_category: str | None
    billable: bool
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None


@dataclass(frozen=True)
class EndpointState:
    """What GetCallbackEndpoint shows (never the secret)."""

    url: str
    cursor: int
    attempts: int
    failing_since: datetime | None
    next_attempt_at: datetime
    last_status: str
    delivered_count: int
    dead_lettered_count: int
