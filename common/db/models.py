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
    Computed,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
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
    HoldReason,
    ImportRowOutcome,
    ImportSource,
    LimitSource,
    MessageState,
    PhoneStatus,
    ReceiptFlag,
    ReceiptState,
    RejectionReason,
    Role,
    RunState,
    SenderProvider,
    TemplateCategory,
    TemplateParameterFormat,
    TemplateSource,
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


def _person_key(column: str = "person_id") -> ForeignKeyConstraint:
    """A guest table's key to its person, in the row's own workspace (see Person)."""
    return ForeignKeyConstraint(
        ["workspace_id", column],
        ["person.workspace_id", "person.id"],
        deferrable=True,
        initially="IMMEDIATE",
    )


def _guest_key(target: str, *, ondelete: str | None = None, primary: bool = False) -> Mapped[Any]:
    """A key among the rows an import writes: deferrable (see Person)."""
    key = ForeignKey(target, ondelete=ondelete, deferrable=True, initially="IMMEDIATE")
    return mapped_column(Uuid, key, nullable=False, primary_key=primary)


# --- workspaces and people acting in them -------------------------------------------------------


class Workspace(Base):
    """An organiser's space: every other row belongs to exactly one."""

    __tablename__ = "workspace"

    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(Text)
    default_region: Mapped[str] = mapped_column(Text)
    sender_phone_number_id: Mapped[str] = mapped_column(Text, index=True)
    """Meta: the phone number id (digits). Twilio: the sender as Twilio writes it in callbacks,
    'whatsapp:+E164' (a From number) or a Messaging Service SID (MG...)."""
    sender_provider: Mapped[str] = mapped_column(Text, server_default="meta")
    twilio_account_sid: Mapped[str | None] = mapped_column(Text)
    # Quiet hours: local sending window "HH:MM-HH:MM" of every run (a run may override it).
    send_window: Mapped[str | None] = mapped_column(Text)
    # Meta's portfolio messaging limit: unique recipients per moving 24 h (None: unlimited).
    messaging_limit: Mapped[int | None] = mapped_column(Integer)
    messaging_limit_source: Mapped[str | None] = mapped_column(Text)
    """Who set it last (operator, or provider: Meta's webhooks and its phone number answer)."""
    messaging_limit_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When that word was said (the newest wins: Meta's webhooks arrive out of order)."""
    waba_id: Mapped[str | None] = mapped_column(Text)
    """The WhatsApp Business Account owning the sender's templates (SyncTemplates reads it)."""
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("messaging_limit IS NULL OR messaging_limit > 0", name="limit_positive"),
        CheckConstraint("default_region ~ '^[A-Z]{2}$'", name="default_region_iso"),
        one_of("sender_provider", SenderProvider),
        one_of("messaging_limit_source", LimitSource, name="limit_source_valid"),
        CheckConstraint(
            "sender_provider <> 'twilio' OR (twilio_account_sid ~ '^AC[0-9a-fA-F]{32}$' AND "
            "sender_phone_number_id ~ '^(whatsapp:\\+[1-9][0-9]{6,14}|MG[0-9a-fA-F]{32})$')",
            name="twilio_sender",
        ),
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


class ConsoleKey(Base):
    """A console sign-in key of one membership: only its SHA-256 is stored (the key is random)."""

    __tablename__ = "console_key"

    id: Mapped[uuid.UUID] = _id()
    membership_id: Mapped[uuid.UUID] = _fk("membership.id")
    key_sha256: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("length(key_sha256) = 32", name="key_sha256_is_a_digest"),
        Index(None, "membership_id"),
    )


class Event(Base):
    """Something guests are invited to."""

    __tablename__ = "event"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    name: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    location: Mapped[str] = mapped_column(Text, server_default="")
    time_zone: Mapped[str] = mapped_column(Text, server_default="UTC")
    """IANA time zone (e.g. Europe/Lisbon): template dates and times are written in it."""
    address: Mapped[str] = mapped_column(Text, server_default="")
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="coordinates_paired"),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        Index(None, "workspace_id", "starts_at"),
    )


# --- guests -------------------------------------------------------------------------------------


# Keys among the guest tables. Only the import adds their rows (docs/guests.md; the status path
# sets an identity's provider user id, no key), one transaction per import, and none of their
# rows, nor workspaces, is ever deleted. Each child names its person by (workspace_id,
# person_id): one key check that also keeps the two in one workspace, where a key to workspace
# and one to person took two and let them differ. The roots, person and guest_unit, keep their
# key to workspace; import rows (the import's log) keep none. The keys among the rows an import
# writes are deferrable: the import checks each batch's while it plans the next
# (persistence/guests.py, GUEST_KEYS); any other statement checks them as it ends (migration
# 0024).


class Person(Base):
    """A guest. Their phone, as written, is kept even when it cannot be normalised."""

    __tablename__ = "person"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _guest_key("workspace.id")
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
        # What the guest tables' keys name (and what lists a workspace's people).
        UniqueConstraint("workspace_id", "id"),
    )


class GuestIdentity(Base):
    """The normalised E.164 phone that identifies one person, unique per workspace."""

    __tablename__ = "guest_identity"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    phone_e164: Mapped[str] = mapped_column(Text)
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = _created_at()
    provider_user_id: Mapped[str | None] = mapped_column(Text)
    """Meta's business-scoped user id for this phone (``US.1349…``), once a webhook reported
    it (a status's ``contacts[]``, ``recipient_user_id``); one per person per workspace."""

    __table_args__ = (
        _person_key(),
        UniqueConstraint("workspace_id", "phone_e164"),
        UniqueConstraint("person_id"),
        CheckConstraint("phone_e164 ~ '^\\+[1-9][0-9]{6,14}$'", name="phone_e164_format"),
        CheckConstraint("provider_user_id <> ''", name="provider_user_id_not_empty"),
        Index(
            "uq_guest_identity_provider_user_id",
            "workspace_id",
            "provider_user_id",
            unique=True,
            postgresql_where=text("provider_user_id IS NOT NULL"),
        ),
    )


class GuestUnit(Base):
    """A household: the unit an invitation goes to, through its designated contact."""

    __tablename__ = "guest_unit"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _guest_key("workspace.id")
    name: Mapped[str] = mapped_column(Text)
    contact_person_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    side: Mapped[str | None] = mapped_column(Text)
    preferred_language: Mapped[str | None] = mapped_column(Text)
    """The household's language (en_US form); a run sends the template's translation that fits
    it (domain/languages.py). None: the run's language."""
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        _person_key("contact_person_id"),
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
    )


class GuestUnitMembership(Base):
    """A person's membership of a household; closing it (active=false) keeps the history."""

    __tablename__ = "guest_unit_membership"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    guest_unit_id: Mapped[uuid.UUID] = _guest_key("guest_unit.id")
    person_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    joined_at: Mapped[datetime] = _created_at()
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        _person_key(),
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

    guest_unit_id: Mapped[uuid.UUID] = _guest_key("guest_unit.id", ondelete="CASCADE", primary=True)
    tag_id: Mapped[uuid.UUID] = _guest_key("tag.id", ondelete="CASCADE", primary=True)

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
    """One input row of an import and what happened to it. No keys: the import writes it in the
    transaction that writes its run and the person it names (migration 0024)."""

    __tablename__ = "import_row"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    import_run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    row_number: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB)
    phone_e164: Mapped[str | None] = mapped_column(Text)
    person_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
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
    twilio_content_sid: Mapped[str | None] = mapped_column(Text)
    """The Twilio Content API SID (HX...) this template is sent as through Twilio."""
    source: Mapped[str] = mapped_column(Text, server_default=TemplateSource.MANUAL.value)
    meta_template_id: Mapped[str | None] = mapped_column(Text)
    quality: Mapped[str | None] = mapped_column(Text)
    parameter_format: Mapped[str] = mapped_column(
        Text, server_default=TemplateParameterFormat.POSITIONAL.value
    )
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    previous_category: Mapped[str | None] = mapped_column(Text)
    """The category before Meta's last recategorisation (shown at precheck)."""
    pending_category: Mapped[str | None] = mapped_column(Text)
    """The category Meta announced it will move the template to (impending recategorisation)."""
    status_reason: Mapped[str | None] = mapped_column(Text)
    """Meta's reason for the last status change (e.g. FIRST_PAUSE: low quality)."""
    webhook_times: Mapped[dict[str, int]] = mapped_column(JSONB, server_default="{}")
    """Per template webhook field, Meta's time (entry.time) of the last one applied: an older
    one arriving late is stale and changes nothing."""
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_on_meta_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when a sync no longer finds it on Meta; the row stays for the runs that used it."""
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint(
            "twilio_content_sid IS NULL OR twilio_content_sid ~ '^HX[0-9a-fA-F]{32}$'",
            name="twilio_content_sid_format",
        ),
        one_of("category", TemplateCategory),
        one_of("status", TemplateStatus),
        one_of("source", TemplateSource),
        one_of("parameter_format", TemplateParameterFormat),
        UniqueConstraint("workspace_id", "name", "language"),
        Index(None, "workspace_id", "meta_template_id"),
    )


class DoNotMessageEntry(Base):
    """A person the workspace must never message, by phone, by Meta user id, or both; removal is
    kept (removed_at) and audited."""

    __tablename__ = "do_not_message_entry"

    id: Mapped[uuid.UUID] = _id()
    workspace_id: Mapped[uuid.UUID] = _fk("workspace.id")
    phone_e164: Mapped[str | None] = mapped_column(Text)
    provider_user_id: Mapped[str | None] = mapped_column(Text)
    """Meta's business-scoped user id, for a person known (or also known) by it."""
    reason: Mapped[str] = mapped_column(Text, server_default="")
    source: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[uuid.UUID | None] = _fk("membership.id", nullable=True)
    created_at: Mapped[datetime] = _created_at()
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    removed_by: Mapped[uuid.UUID | None] = _fk("membership.id", nullable=True)
    removal_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        one_of("source", DnmSource),
        CheckConstraint(
            "phone_e164 IS NOT NULL OR provider_user_id IS NOT NULL", name="phone_or_user_id"
        ),
        CheckConstraint("provider_user_id <> ''", name="provider_user_id_not_empty"),
        # One active entry per phone, and per user id; removed entries stay as history.
        Index(
            "uq_do_not_message_entry_active_phone",
            "workspace_id",
            "phone_e164",
            unique=True,
            postgresql_where=text("removed_at IS NULL"),
        ),
        Index(
            "uq_do_not_message_entry_active_user_id",
            "workspace_id",
            "provider_user_id",
            unique=True,
            postgresql_where=text("removed_at IS NULL AND provider_user_id IS NOT NULL"),
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
    fallback_language: Mapped[str | None] = mapped_column(Text)
    """The translation for guests no translation fits (None: they are blocked)."""
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PrecheckCandidate(Base):
    """One resolved target of a precheck, in audience order."""

    __tablename__ = "precheck_candidate"

    # No foreign key to precheck either: candidates are written only by the statement that
    # evaluates them, in the transaction that inserts their precheck, and prechecks are never
    # deleted; checking the key for each of 100,000 rows was a third of a precheck's time.
    precheck_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
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
    language: Mapped[str | None] = mapped_column(Text)
    """The template translation this recipient gets (eligible ones; domain/languages.py)."""

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
    send_plan: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    """Header, parameter format and buttons every message sends (domain/send_plan)."""
    total_count: Mapped[int] = mapped_column(Integer, server_default="0")
    eligible_count: Mapped[int] = mapped_column(Integer, server_default="0")
    blocked_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A scheduled run waits until send_at; after deadline its unsent messages expire.
    send_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # ResendRun: the earlier run whose recipients this run sends to again.
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("invite_send_run.id"))
    # Quiet hours of this run ("HH:MM-HH:MM"), overriding the workspace's.
    send_window: Mapped[str | None] = mapped_column(Text)
    # StartRun commits the first messages, then creates the rest in batches (persistence/runs):
    # the candidate position from which messages are still to be created (NULL: all exist), and
    # what each message is created with (provider, variable sources, frozen event values).
    next_candidate_position: Mapped[int | None] = mapped_column(Integer)
    message_spec: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        one_of("state", RunState),
        CheckConstraint(
            "state <> 'scheduled' OR send_at IS NOT NULL", name="scheduled_has_send_at"
        ),
        CheckConstraint(
            "deadline IS NULL OR send_at IS NULL OR deadline > send_at",
            name="deadline_after_send_at",
        ),
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
        Index(
            "ix_invite_send_run_scheduled",
            "send_at",
            postgresql_where=text("state = 'scheduled'"),
        ),
        Index(
            "ix_invite_send_run_deadline",
            "deadline",
            postgresql_where=text("deadline IS NOT NULL AND finished_at IS NULL"),
        ),
        Index(None, "parent_run_id"),
        Index(
            "ix_invite_send_run_creating",
            "id",
            postgresql_where=text("next_candidate_position IS NOT NULL"),
        ),
    )


PENDING_STATES = (MessageState.QUEUED, MessageState.SENDING)
"""The message states the dispatcher still has to move a message out of."""
DISPATCH_STATE = (
    "CASE WHEN state IN (" + ", ".join(f"'{s.value}'" for s in PENDING_STATES) + ") THEN state END"
)
"""invite_message.dispatch_state's expression."""


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
    dispatch_state: Mapped[str | None] = mapped_column(
        Text, Computed(DISPATCH_STATE, persisted=True)
    )
    """`state` while the dispatcher still has to move the message (queued, sending), NULL after.
    The partial indexes of the pending messages read it instead of `state`, so that a provider
    status (sent, delivered, read), which changes `state` only, changes no indexed column and
    Postgres rewrites the row in place (migration 0025). A statement that wants one of those
    indexes filters on it: `state_sql.pending`."""
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # Why a queued message waits until next_attempt_at (quiet hours), when it does.
    hold_reason: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    """The template translation it is sent in (None: the run's language)."""
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
    # The provider's pricing block as last reported with a status (Meta: billable, category,
    # pricing_model, type); NULL until a status carried one.
    pricing_billable: Mapped[bool | None] = mapped_column(Boolean)
    pricing_category: Mapped[str | None] = mapped_column(Text)
    pricing_model: Mapped[str | None] = mapped_column(Text)
    pricing_type: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "workspace_id", "event_id"],
            ["invite_send_run.id", "invite_send_run.workspace_id", "invite_send_run.event_id"],
        ),
        one_of("state", MessageState),
        one_of("rejection_reason", RejectionReason),
        one_of("hold_reason", HoldReason),
        one_of("provider", SenderProvider),
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
        # Only messages with a provider id: every reader asks for given ids (migration 0020).
        Index(
            "uq_invite_message_provider_message_id",
            "provider",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        UniqueConstraint("run_id", "position"),
        # GetEventInvitations: each household's latest invitation, paged by household; also
        # PrecheckSend's already-invited test (every invitation of the event).
        Index("ix_invite_message_event_unit", "event_id", "guest_unit_id", "created_at"),
        Index(
            "ix_invite_message_claimable",
            "run_id",
            "next_attempt_at",
            postgresql_where=text("dispatch_state = 'queued'"),
        ),
        # The messages in flight: the reconciler's unresolved outcomes (all runs) and whether a
        # run still has one (its completion). Each write of a message pays every index that is
        # not partial: a run's messages by state have none of their own (migration 0019).
        Index(
            "ix_invite_message_unresolved_sending",
            "run_id",
            "sending_at",
            postgresql_where=text("dispatch_state = 'sending'"),
        ),
        # The messaging limit's moving 24 h window: recent sends of a sender's runs.
        Index(
            "ix_invite_message_run_sending_at",
            "run_id",
            "sending_at",
            postgresql_where=text("sending_at IS NOT NULL"),
        ),
        # The messaging limit counts claimed, not yet marked messages as used on every claim
        # (persistence/messaging_limit.py): only those few rows are in this index.
        Index(
            "ix_invite_message_leased",
            "run_id",
            postgresql_where=text("dispatch_state = 'queued' AND lease_owner IS NOT NULL"),
        ),
        # GetRunStatus reads held messages on every call: a partial index keeps that read to
        # the few held rows (billable messages are counted by triggers: InviteRunBillable).
        Index(
            "ix_invite_message_held",
            "run_id",
            "hold_reason",
            postgresql_where=text("dispatch_state = 'queued' AND hold_reason IS NOT NULL"),
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


class InviteRunBillable(Base):
    """Billable messages of a run by (phone prefix, pricing category): what GetRunStatus's cost
    estimate reads.

    Maintained only by statement-level triggers on invite_message (migration 0017), sharded by
    the writing backend's pid like InviteRunCount; readers sum the shards. `prefix` is the
    phone's first five characters ('+' and up to four digits: the longest calling code a rate
    may name), '' for a message without a phone.
    """

    __tablename__ = "invite_run_billable"

    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("invite_send_run.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(Text, primary_key=True)
    category: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ChangeLog(Base):
    """One message or run state change (or creation), in the writer's transaction.

    Written only by the statement-level triggers of migration 0012 on invite_message and
    invite_send_run. `id` orders one message's changes; `seq` (the stream's cursor) is assigned
    after commit by the single sequencer (persistence/changes.py, docs/changes.md).
    """

    __tablename__ = "change_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(Text)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[int | None] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("kind IN ('message', 'run')", name="kind_valid"),
        Index("ix_change_log_pending", "id", postgresql_where=text("seq IS NULL")),
        Index(
            "ix_change_log_workspace_seq",
            "workspace_id",
            "seq",
            postgresql_where=text("seq IS NOT NULL"),
        ),
        # Partial: a NULL entry per unnumbered change was written for nobody (migration 0022).
        Index(
            "uq_change_log_numbered_seq",
            "seq",
            unique=True,
            postgresql_where=text("seq IS NOT NULL"),
        ),
    )


class ChangeLogHead(Base):
    """The highest change number given so far: one row, moved by the sequencer in the statement
    that numbers a round, read as every reader's head (migration 0023)."""

    __tablename__ = "change_log_head"

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    top: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("one", name="one_row"),)


class CallbackEndpoint(Base):
    """A workspace's signed-callback receiver: where changes are POSTed, the HMAC secret, the
    delivery cursor into change_log (the last change delivered or dead-lettered) and the retry
    state (callbacks/deliverer.py)."""

    __tablename__ = "callback_endpoint"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspace.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    cursor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[str] = mapped_column(Text, server_default="")
    delivered_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    dead_lettered_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("url ~ '^https?://'", name="url_http"),
        CheckConstraint("length(secret) >= 16", name="secret_length"),
    )


class CallbackAttempt(Base):
    """The delivery log: one POST of changes first_seq..last_seq and what came of it."""

    __tablename__ = "callback_attempt"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("callback_endpoint.workspace_id", ondelete="CASCADE")
    )
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text, server_default="")
    attempted_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint(
            "outcome IN ('delivered', 'failed', 'dead_lettered')", name="outcome_valid"
        ),
        Index("ix_callback_attempt_workspace_id_attempted_at", "workspace_id", "attempted_at"),
    )


class WorkspaceRate(Base):
    """A workspace's rate card: the price of one billable message per country calling code
    (`*`: any other) and pricing category, for cost estimates."""

    __tablename__ = "workspace_rate"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspace.id", ondelete="CASCADE"), primary_key=True
    )
    country_code: Mapped[str] = mapped_column(Text, primary_key=True)
    category: Mapped[str] = mapped_column(Text, primary_key=True)
    price: Mapped[Any] = mapped_column(Numeric(12, 6))
    currency: Mapped[str] = mapped_column(Text, server_default="USD")

    __table_args__ = (
        CheckConstraint(
            "country_code = '*' OR country_code ~ '^[1-9][0-9]{0,3}$'", name="country_code_format"
        ),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )


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
    provider: Mapped[str] = mapped_column(Text, server_default="meta")
    """meta: a Graph JSON body; twilio: a form-encoded Twilio callback."""
    phone_number_id: Mapped[str | None] = mapped_column(Text)
    workspace_id: Mapped[uuid.UUID | None] = _fk("workspace.id", nullable=True)
    state: Mapped[str] = mapped_column(Text)
    flag: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[dict[str, str]]] = mapped_column(JSONB, server_default="[]")
    """Items not read (``unreadable``: path and reason) or carrying nothing (``ignored``)."""
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _created_at()
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("body_sha256"),
        one_of("state", ReceiptState),
        one_of("provider", SenderProvider, name="provider_valid"),
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
    # No foreign keys: ApplyStatus alone writes both ids, in the transaction that holds the
    # message locked and joins the receipt, and neither is ever deleted; the two key checks per
    # status guarded nothing more and cost a sixth of Postgres's time per status (migration 0022).
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    receipt_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    phone_number_id: Mapped[str] = mapped_column(Text, server_default="")
    recipient_id: Mapped[str] = mapped_column(Text, server_default="")
    callback_data: Mapped[str] = mapped_column(Text, server_default="")
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    outcome: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The pricing block (billable, category, model, type) of a status stored as an orphan, recorded
    # on its message when it is matched (migration 0029) and kept afterwards; NULL for a status
    # whose message was known when it came (its block went to the message at once).
    pricing: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", "status"),
        one_of("outcome", ApplyOutcome),
        one_of("provider", SenderProvider),
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
