"""The enumerated values both services and the schema share (pure Python, no I/O).

The database stores these as text guarded by CHECK constraints; the proto enums carry the same
names with a prefix (`MESSAGE_STATE_QUEUED` <-> `MessageState.QUEUED`).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A membership's role inside its workspace."""

    PARENT_ADMIN = "parent_admin"
    ADMIN = "admin"
    VIEWER = "viewer"


class MessageState(StrEnum):
    """Lifecycle state of one invite message."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


class RejectionReason(StrEnum):
    """Why a recipient was blocked or failed."""

    DO_NOT_MESSAGE = "do_not_message"
    NO_PHONE = "no_phone"
    INVALID_PHONE = "invalid_phone"
    DUPLICATE_TARGET = "duplicate_target"
    ALREADY_INVITED = "already_invited"
    GUEST_INACTIVE = "guest_inactive"
    OUTCOME_UNKNOWN = "outcome_unknown"
    RETRIES_EXHAUSTED = "retries_exhausted"
    PROVIDER_REJECTED = "provider_rejected"
    EXPIRED = "expired"
    NO_APPROVED_TRANSLATION = "no_approved_translation"


class HoldReason(StrEnum):
    """Why a queued message waits (its next_attempt_at) although its run is dispatching."""

    QUIET_HOURS = "quiet_hours"
    MARKETING_LIMIT = "marketing_limit"
    MESSAGING_LIMIT = "messaging_limit"


class RunState(StrEnum):
    """State of an invite send run."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    DISPATCHING = "dispatching"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TemplateCategory(StrEnum):
    """Meta's template category."""

    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"


class TemplateStatus(StrEnum):
    """A template's approval status."""

    APPROVED = "APPROVED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"


class TemplateSource(StrEnum):
    """Where a registry template came from."""

    META = "meta"
    """Read from the WhatsApp Business Account by SyncTemplates (Meta owns it)."""
    MANUAL = "manual"
    """Registered by hand (offline use: nothing checks it against Meta)."""


class TemplateParameterFormat(StrEnum):
    """How a template's body parameters are written and sent (Meta's ``parameter_format``)."""

    POSITIONAL = "positional"
    NAMED = "named"


class DnmSource(StrEnum):
    """Where a do-not-message entry came from."""

    OPERATOR = "operator"
    USER_PREFERENCES_STOP = "user_preferences_stop"
    INBOUND_STOP_KEYWORD = "inbound_stop_keyword"
    PROVIDER_ERROR_131050 = "provider_error_131050"
    PROVIDER_ERROR_21610 = "provider_error_21610"


class LimitSource(StrEnum):
    """Who set a workspace's messaging limit last."""

    OPERATOR = "operator"
    PROVIDER = "provider"


class SenderProvider(StrEnum):
    """Which provider a workspace sends through (and a webhook receipt came from)."""

    META = "meta"
    TWILIO = "twilio"


class ImportSource(StrEnum):
    """Where an import's rows came from."""

    CSV = "csv"
    CONTACTS = "contacts"
    MANUAL = "manual"


class ImportRowOutcome(StrEnum):
    """What happened to one import row."""

    CREATED = "created"
    UPDATED = "updated"
    REACTIVATED = "reactivated"
    WARNING_MALFORMED_PHONE = "warning_malformed_phone"
    SKIPPED_NO_PHONE = "skipped_no_phone"


class PhoneStatus(StrEnum):
    """Whether a person's phone could be normalised."""

    VALID = "valid"
    MALFORMED = "malformed"
    MISSING = "missing"


class AudienceMode(StrEnum):
    """How an event's base audience is chosen."""

    ALL = "all"
    TAGS = "tags"
    SIDES = "sides"
    EXPLICIT = "explicit"


class AudienceOverrideKind(StrEnum):
    """An explicit household listed on an audience."""

    MEMBER = "member"  # part of an EXPLICIT audience
    INCLUDE = "include"
    EXCLUDE = "exclude"


class ApplyOutcome(StrEnum):
    """What applying one provider status did (recorded on every status event)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    AFTER_TERMINAL = "after_terminal"
    UNKNOWN_STATUS = "unknown_status"
    ORPHANED = "orphaned"


class ReceiptState(StrEnum):
    """Processing state of a stored webhook receipt."""

    PENDING = "pending"  # verified, waiting to be forwarded to ApplyStatus
    APPLIED = "applied"  # ApplyStatus succeeded for every readable update in it
    FLAGGED = "flagged"  # stored but never applied (not JSON, unknown shape or sender)


class ReceiptFlag(StrEnum):
    """What an operator should know about a receipt.

    The first three go with state ``flagged`` (nothing in it was applied); the last two with
    state ``applied``: ``unreadable_items`` means every readable update was applied but some
    items could not be read (see ``webhook_receipt.notes``: alert on it), ``ignored`` means the
    body held only documented changes that carry nothing for this system (not a failure).
    """

    INVALID_JSON = "invalid_json"
    UNKNOWN_SHAPE = "unknown_shape"
    UNKNOWN_SENDER = "unknown_sender"
    UNREADABLE_ITEMS = "unreadable_items"
    IGNORED = "ignored"
