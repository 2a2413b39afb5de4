"""The one Postgres schema both services use (SQLAlchemy 2 typed ORM).

Alembic (migrations/) is the only way this schema reaches a database; a test fails when these
models and the migrations drift. Invariants the product relies on are enforced here, by the
database, not only by code: unique phone identity per workspace, one active household per person,
one message per (run, phone), unique provider message ids, idempotency keys, one receipt per body
hash, one status event per (provider message id, status), foreign keys and CHECKed enumerations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.vocabulary import (
    ApplyOutcome,
    AudienceMode,
    AudienceOverrideKind,
    DnmSource,
    ImportRowOutcome,
    ImportSource,
    MessageState,
    PhoneStatus,
    ReceiptFlag,
    ReceiptState,
    RejectionReason,
    Role,
    RunState,
    TemplateCategory,
    TemplateStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def one_of(column: str, values: Iterable[StrEnum], name: str | None = None) -> CheckConstraint:
    """A CHECK constraint keeping `column` inside an enumeration's values."""
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or f"{column}_valid")


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(
        Uuid, primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _fk(target: str, *, nullable: bool = False, ondelete: str | None = None) -> Mapped[Any]:
    return mapped_column(Uuid, ForeignKey(target, ondelete=ondelete), nullable=nullable)


# --- workspaces and people acting in them -------------------------------------------------------


class Workspace(Base):
    """An organiser's space: every other row belongs to exactly one."""

    __tablename__ = "workspace"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(Text)
    default_region: Mapped[str] = mapped_column(Text)
    sender_phone_number_id: Mapped[str] = mapped_column(Text, index=True)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("default_region ~ '^[A-Z]{2}$'", name="default_region_iso"),
    )


class Membership(Base):
    """An actor in a workspace with a role (the `x-actor-id` of API calls)."""

    __tablename__ = "membership"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    display_name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (one_of("role", Role), Index(None, "workspace_id"))


class Event(Base):
    """Something guests are invited to."""

    __tablename__ = "event"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    name: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    location: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        Index(None, "workspace_id", "starts_at"),
    )


# --- guests -------------------------------------------------------------------------------------


class Person(Base):
    """A guest. Their phone, as written, is kept even when it cannot be normalised."""

    __tablename__ = "person"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    display_name: Mapped[str] = mapped_column(Text)
    raw_phone: Mapped[str] = mapped_column(Text, server_default="")
    phone_status: Mapped[str] = mapped_column(Text)
    phone_e164: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        one_of("phone_status", PhoneStatus),
        # Only a valid phone has a normalised form; malformed phones are stored, never inviteable.
        CheckConstraint(
            "(phone_status = 'valid') = (phone_e164 IS NOT NULL)", name="phone_e164_iff_valid"
        ),
        Index(None, "workspace_id"),
    )


class GuestIdentity(Base):
    """The normalised E.164 phone that identifies one person, unique per workspace."""

    __tablename__ = "guest_identity"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    phone_e164: Mapped[str] = mapped_column(Text)
    person_id: Mapped[uuid.UUID] = _fk("person.id")
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        UniqueConstraint("workspace_id", "phone_e164"),
        UniqueConstraint("person_id"),
        CheckConstraint("phone_e164 ~ '^\\+[1-9][0-9]{6,14}$'", name="phone_e164_format"),
    )


class GuestUnit(Base):
    """A household: the unit an invitation goes to, through its designated contact."""

    __tablename__ = "guest_unit"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    name: Mapped[str] = mapped_column(Text)
    contact_person_id: Mapped[uuid.UUID | None] = _fk("person.id", nullable=True)
    side: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
    )


class GuestUnitMembership(Base):
    """A person's membership of a household; closing it (active=false) keeps the history."""

    __tablename__ = "guest_unit_membership"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    guest_unit_id: Mapped[uuid.UUID] = _fk("guest_unit.id")
    person_id: Mapped[uuid.UUID] = _fk("person.id")
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    joined_at: Mapped[datetime] = _created_at()
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # A person is in at most one active household per workspace.
        Index(
            "uq_guest_unit_membership_active_person",
            "workspace_id",
            "person_id",
            unique=True,
            postgresql_where=text("active"),
        ),
        Index(None, "guest_unit_id"),
    )


class Tag(Base):
    """A label households can carry, for audience filters."""

    __tablename__ = "tag"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    name: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("workspace_id", "name"),)


class GuestUnitTag(Base):
    """A tag on a household."""

    __tablename__ = "guest_unit_tag"

    guest_unit_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("guest_unit.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index(None, "tag_id"),)


class ImportRun(Base):
    """One import of guests (CSV, contacts or manual rows), with run-level counters."""

    __tablename__ = "import_run"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    actor_id: Mapped[uuid.UUID] = _fk("membership.id")
    source: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(Text, server_default="")
    total_rows: Mapped[int] = mapped_column(Integer, server_default="0")
    created: Mapped[int] = mapped_column(Integer, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, server_default="0")
    reactivated: Mapped[int] = mapped_column(Integer, server_default="0")
    warning_malformed_phone: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped_no_phone: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        one_of("source", ImportSource),
        UniqueConstraint("workspace_id", "idempotency_key"),
    )


class ImportRow(Base):
    """One input row of an import and what happened to it."""

    __tablename__ = "import_row"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    import_run_id: Mapped[uuid.UUID] = _fk("import_run.id", ondelete="CASCADE")
    row_number: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB)
    phone_e164: Mapped[str | None] = mapped_column(Text)
    person_id: Mapped[uuid.UUID | None] = _fk("person.id", nullable=True)
    message: Mapped[str] = mapped_column(Text, server_default="")

    __table_args__ = (
        one_of("outcome", ImportRowOutcome),
        UniqueConstraint("import_run_id", "row_number"),
    )


# --- events' audiences, templates, do-not-message -----------------------------------------------


class EventAudience(Base):
    """How an event's base audience is chosen (one per event)."""

    __tablename__ = "event_audience"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("event.id"), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    mode: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    sides: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (one_of("mode", AudienceMode),)


class EventAudienceOverride(Base):
    """A household listed on an event's audience: explicit member, forced include or exclude."""

    __tablename__ = "event_audience_override"

    event_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("event_audience.event_id", ondelete="CASCADE"), primary_key=True
    )
    guest_unit_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("guest_unit.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (one_of("kind", AudienceOverrideKind),)


class Template(Base):
    """A WhatsApp message template registered for a workspace."""

    __tablename__ = "template"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    name: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    status: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        one_of("category", TemplateCategory),
        one_of("status", TemplateStatus),
        UniqueConstraint("workspace_id", "name", "language"),
    )


class DoNotMessageEntry(Base):
    """A phone the workspace must never message; removal is kept (removed_at) and audited."""

    __tablename__ = "do_not_message_entry"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    phone_e164: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, server_default="")
    source: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[uuid.UUID | None] = _fk("membership.id", nullable=True)
    created_at: Mapped[datetime] = _created_at()
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    removed_by: Mapped[uuid.UUID | None] = _fk("membership.id", nullable=True)
    removal_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        one_of("source", DnmSource),
        # One active entry per phone; removed entries stay as history.
        Index(
            "uq_do_not_message_entry_active_phone",
            "workspace_id",
            "phone_e164",
            unique=True,
            postgresql_where=text("removed_at IS NULL"),
        ),
    )


# --- prechecks, runs, messages ------------------------------------------------------------------


class Precheck(Base):
    """A persisted resolution of an event's audience with every candidate's eligibility."""

    __tablename__ = "precheck"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    event_id: Mapped[uuid.UUID] = _fk("event.id")
    template_id: Mapped[uuid.UUID] = _fk("template.id")
    actor_id: Mapped[uuid.UUID] = _fk("membership.id")
    audience_hash: Mapped[str] = mapped_column(Text)
    total_count: Mapped[int] = mapped_column(Integer)
    eligible_count: Mapped[int] = mapped_column(Integer)
    blocked_count: Mapped[int] = mapped_column(Integer)
    resend_phones: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PrecheckCandidate(Base):
    """One resolved target of a precheck, in audience order."""

    __tablename__ = "precheck_candidate"

    precheck_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("precheck.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A snapshot of who the resolver returned: no foreign keys to the guest tables (guests are
    # never hard-deleted; a key check locks each parent row, which made a 100,000-row precheck
    # several times slower). The run's messages copy these ids.
    guest_unit_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    person_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    display_name: Mapped[str] = mapped_column(Text, server_default="")
    guest_unit_name: Mapped[str] = mapped_column(Text, server_default="")
    phone_e164: Mapped[str | None] = mapped_column(Text)
    eligible: Mapped[bool] = mapped_column(Boolean)
    rejection_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        one_of("rejection_reason", RejectionReason),
        CheckConstraint("eligible = (rejection_reason IS NULL)", name="reason_iff_not_eligible"),
    )


class InviteSendRun(Base):
    """One operator-triggered send of an event's invitations."""

    __tablename__ = "invite_send_run"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    event_id: Mapped[uuid.UUID] = _fk("event.id")
    template_id: Mapped[uuid.UUID] = _fk("template.id")
    language: Mapped[str] = mapped_column(Text)
    precheck_id: Mapped[uuid.UUID] = _fk("precheck.id")
    actor_id: Mapped[uuid.UUID] = _fk("membership.id")
    idempotency_key: Mapped[str] = mapped_column(Text)
    sender_phone_number_id: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    total_count: Mapped[int] = mapped_column(Integer, server_default="0")
    eligible_count: Mapped[int] = mapped_column(Integer, server_default="0")
    blocked_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        one_of("state", RunState),
        UniqueConstraint("workspace_id", "idempotency_key"),
        # A precheck is sent at most once: a second run from it would invite everyone again.
        UniqueConstraint("precheck_id"),
        # The target of invite_message's (run, workspace, event) foreign key.
        UniqueConstraint("id", "workspace_id", "event_id"),
        Index(None, "event_id", "created_at"),
        Index(
            "ix_invite_send_run_active",
            "state",
            postgresql_where=text("state IN ('queued', 'dispatching')"),
        ),
    )


class InviteMessage(Base):
    """One recipient target of a run and its whole lifecycle."""

    __tablename__ = "invite_message"

    id: Mapped[uuid.UUID] = _id()
    # (run_id, workspace_id, event_id) is one foreign key to the run: a message can only carry
    # its own run's workspace and event. The household and person ids are a snapshot of the
    # precheck without foreign keys (guests are never hard-deleted; a key check per row and
    # parent made StartRun of 100,000 messages several times slower).
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    position: Mapped[int] = mapped_column(Integer)
    guest_unit_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    person_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    phone_e164: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    state: Mapped[str] = mapped_column(Text)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(Text, server_default="meta")
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    wa_id: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[str | None] = mapped_column(Text)
    attempt_count: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sending_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "workspace_id", "event_id"],
            ["invite_send_run.id", "invite_send_run.workspace_id", "invite_send_run.event_id"],
        ),
        one_of("state", MessageState),
        one_of("rejection_reason", RejectionReason),
        CheckConstraint("attempt_count >= 0", name="attempt_count_not_negative"),
        CheckConstraint(
            "state <> 'blocked' OR rejection_reason IS NOT NULL", name="blocked_has_reason"
        ),
        # One message per (run, phone); a duplicate target is kept as a blocked row beside it.
        Index(
            "uq_invite_message_run_phone",
            "run_id",
            "phone_e164",
            unique=True,
            postgresql_where=text("rejection_reason IS DISTINCT FROM 'duplicate_target'"),
        ),
        UniqueConstraint("provider", "provider_message_id"),
        UniqueConstraint("run_id", "position"),
        Index(None, "run_id", "state"),
        Index(None, "event_id", "phone_e164"),
        # GetEventInvitations: each household's latest invitation, paged by household.
        Index("ix_invite_message_event_unit", "event_id", "guest_unit_id", "created_at"),
        Index(
            "ix_invite_message_claimable",
            "run_id",
            "next_attempt_at",
            postgresql_where=text("state = 'queued'"),
        ),
        Index(
            "ix_invite_message_unresolved_sending",
            "sending_at",
            postgresql_where=text("state = 'sending'"),
        ),
    )


class InviteRunCount(Base):
    """Message counts of a run by (state, reason, error code): the projection GetRunStatus reads.

    Maintained only by statement-level triggers on invite_message (migration 0004), so every
    writer keeps it right. Rows are sharded by the writing backend's pid: concurrent writers
    never touch the same row (no lock waits, no deadlocks); readers sum the shards.
    """

    __tablename__ = "invite_run_count"

    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("invite_send_run.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, primary_key=True, server_default="")
    error_code: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="0")
    count: Mapped[int] = mapped_column(BigInteger)


class SenderRateLimit(Base):
    """The send schedule of one sender phone number id, shared by every dispatcher replica.

    A GCRA limiter: `next_slot_at` is the earliest moment the next message may go out; a claim
    takes slots and moves it forward by 1/rate each. `rate_factor` (0..1] scales the configured
    rate down after a 130429 and recovers over time from `rate_factor_at`.
    """

    __tablename__ = "sender_rate_limit"

    sender_phone_number_id: Mapped[str] = mapped_column(Text, primary_key=True)
    next_slot_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    rate_factor: Mapped[float] = mapped_column(Double, server_default="1")
    rate_factor_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    throttled_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # A provider outage for this sender (null reason: none): no sends but one probe at a time.
    outage_reason: Mapped[str | None] = mapped_column(Text)
    outage_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_probe_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    probe_interval_seconds: Mapped[float] = mapped_column(Double, server_default="0")

    __table_args__ = (
        CheckConstraint("rate_factor > 0 AND rate_factor <= 1", name="rate_factor_range"),
    )


# --- webhooks, status events, audit -------------------------------------------------------------


class WebhookReceipt(Base):
    """A verified webhook body exactly as received; an identical redelivery is the same receipt."""

    __tablename__ = "webhook_receipt"

    id: Mapped[uuid.UUID] = _id()
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    signature_verdict: Mapped[str] = mapped_column(Text)
    phone_number_id: Mapped[str | None] = mapped_column(Text)
    workspace_id: Mapped[uuid.UUID | None] = _fk("workspace.id", nullable=True)
    state: Mapped[str] = mapped_column(Text)
    flag: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _created_at()
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("body_sha256"),
        one_of("state", ReceiptState),
        one_of("flag", ReceiptFlag),
        CheckConstraint("signature_verdict = 'valid'", name="signature_verdict_valid"),
        Index(
            "ix_webhook_receipt_pending",
            "received_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )


class StatusEvent(Base):
    """One provider status per (provider message id, status), with what applying it did."""

    __tablename__ = "status_event"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(Text, server_default="meta")
    provider_message_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    provider_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message_id: Mapped[uuid.UUID | None] = _fk("invite_message.id", nullable=True)
    receipt_id: Mapped[uuid.UUID | None] = _fk("webhook_receipt.id", nullable=True)
    phone_number_id: Mapped[str] = mapped_column(Text, server_default="")
    recipient_id: Mapped[str] = mapped_column(Text, server_default="")
    callback_data: Mapped[str] = mapped_column(Text, server_default="")
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    outcome: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", "status"),
        one_of("outcome", ApplyOutcome),
        Index(
            "ix_status_event_orphaned",
            "provider_message_id",
            postgresql_where=text("outcome = 'orphaned'"),
        ),
        Index(
            "ix_status_event_orphaned_callback",
            "callback_data",
            postgresql_where=text("outcome = 'orphaned'"),
        ),
        Index(None, "message_id"),
    )


class AuditEntry(Base):
    """Who did what to what, written in the same transaction as the action."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    actor_id: Mapped[uuid.UUID | None] = _fk("membership.id", nullable=True)
    action: Mapped[str] = mapped_column(Text)
    subject_type: Mapped[str] = mapped_column(Text)
    subject_id: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("action ~ '^[a-z_]+\\.[a-z_]+$'", name="action_format"),
        Index(None, "workspace_id", "created_at"),
    )
