"""The message lifecycle rules for provider statuses (pure: no I/O, no framework imports).

Which state a provider status moves a message to is the state machine's answer
(``domain/transitions.py``: the ``provider_*`` events, built from the ranks ``queued``/``sending``
0 < ``sent`` 1 < ``delivered`` 2 < ``read`` 3). This module adds what the table does not say: what
a status that moves nothing means (``stale`` or ``after_terminal``) and which timestamps it fills.

* A status of higher rank advances the state; a lower or equal one never regresses it (``stale``),
  but still fills its own timestamp.
* ``failed`` is terminal and may follow queued, sending, sent or delivered. ``read`` is final
  success: a ``failed`` after ``read`` is recorded and ignored, as is a ``read`` after
  ``failed`` (``after_terminal``). A ``sent`` or ``delivered`` after ``failed`` fills its
  timestamp (the message was sent, then failed to deliver), nothing else.
* Statuses this system does not track (``played``, ``deleted``, future ones) change nothing.
* Blocked or cancelled messages were never sent: any status is ``after_terminal`` and changes
  nothing.
* A ``failed`` status whose error defers (Meta's per-user marketing cap 131049, Twilio's 63049)
  does not fail the message: it was not delivered, and goes back to the queue to be sent again
  after at least 24 h (``provider_deferred``; the writer sets when). Its earlier send's ``sent``
  time is dropped, and any later status of that send is ``stale`` (``Lifecycle.deferred``), so
  the order in which its statuses arrive does not matter. When that send was the last the retry
  policy allows (``Lifecycle.last_attempt``: DISPATCH_MAX_ATTEMPTS calls), the message fails
  ``retries_exhausted`` instead (``provider_deferral_exhausted``), as a 131049 in the send's
  own answer does: a recipient whose cap never lifts is not invited again every day for ever.

Timestamps come from the provider and are chosen so the result does not depend on the order in
which a consistent set of statuses arrives (Meta delivers out of order):

* ``sent_at`` is the provider's ``sent`` time; it replaces the dispatcher's accept time.
* ``delivered_at`` is the earliest time the message is known to be delivered: the ``delivered``
  time, or the ``read`` time when ``delivered`` never came ("read implies delivered").
* ``read_at`` / ``failed_at`` are the provider's ``read`` / ``failed`` times.

Duplicates (the same status twice for one message) are decided by the caller's event log (the
``status_event`` unique key); :func:`replay` models them for the property tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from common.vocabulary import (
    ApplyOutcome,
    DnmSource,
    MessageState,
    RejectionReason,
    SenderProvider,
)
from dispatch_service.domain.identities import ProviderContact
from dispatch_service.domain.pricing import Pricing
from dispatch_service.domain.retry import RetryClass, classify_code
from dispatch_service.domain.transitions import (
    MESSAGE_TRANSITIONS,
    PROVIDER_STATUS_EVENTS,
    MessageEvent,
    message_step,
)

SENT = MessageState.SENT.value
DELIVERED = MessageState.DELIVERED.value
READ = MessageState.READ.value
FAILED = MessageState.FAILED.value

TRACKED_STATUSES = frozenset({SENT, DELIVERED, READ, FAILED})
"""Provider statuses that take part in the lifecycle; any other is recorded and ignored."""

NEVER_SENT = frozenset({MessageState.BLOCKED, MessageState.CANCELLED})


@dataclass(frozen=True, slots=True)
class ProviderError:
    """One entry of a failed status' ``errors``."""

    code: int
    title: str = ""
    details: str = ""


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """What the lifecycle needs from one provider status: which one, when, and its errors."""

    status: str
    at: datetime
    errors: tuple[ProviderError, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One provider status as reported through a webhook, with what identifies its message."""

    provider_message_id: str
    """The provider's message id (wamid)."""
    report: ProviderStatus
    phone_number_id: str
    """The sender phone number id the webhook was addressed to."""
    recipient_id: str = ""
    """The recipient's WhatsApp id."""
    callback_data: str = ""
    """biz_opaque_callback_data: our invite_message id, as sent."""
    receipt_id: uuid.UUID | None = None
    """The webhook receipt it came from."""
    recipient_user_id: str = ""
    """The recipient's business-scoped user id (only when the message was sent to one)."""
    recipient_parent_user_id: str = ""
    recipient_type: str = ""
    """``group`` for a group status (``recipient_id`` is then the group id), else empty."""
    participant_id: str = ""
    """Group statuses: the participant's phone (WhatsApp id), if shared."""
    participant_user_id: str = ""
    """Group statuses: the participant's business-scoped user id."""
    contacts: tuple[ProviderContact, ...] = ()
    """The ``contacts[]`` entries naming the recipient: phone and user id pairs (never on
    ``failed``)."""
    provider: SenderProvider = SenderProvider.META
    """Who reported it (Meta or Twilio): with ``provider_message_id``, the key of its event."""
    pricing: Pricing | None = None
    """The pricing block reported with it (None: none). Kept with the status while it waits
    for its message (an orphan), so the cost is recorded when it is applied."""


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The part of a message the status path may change."""

    state: MessageState
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    error: ProviderError | None = None
    rejection_reason: RejectionReason | None = None
    deferred: bool = False
    """Queued again after a provider deferral (131049): its previous send's statuses are
    stale; the next send starts afresh."""
    last_attempt: bool = False
    """Its send was the last one the retry policy allows: a deferral fails it instead."""


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _fill_timestamp(message: Lifecycle, status: ProviderStatus) -> Lifecycle:
    """Fill the timestamp(s) a sent/delivered/read status speaks for, whatever the state."""
    if status.status == SENT:
        return replace(message, sent_at=status.at)
    if status.status == DELIVERED:
        return replace(message, delivered_at=_earliest(message.delivered_at, status.at))
    if status.status == READ:
        return replace(
            message,
            read_at=message.read_at or status.at,
            delivered_at=_earliest(message.delivered_at, status.at),
        )
    return message


def _fail(message: Lifecycle, status: ProviderStatus) -> Lifecycle:
    return replace(
        message,
        state=MessageState.FAILED,
        failed_at=status.at,
        error=status.errors[0] if status.errors else None,
        rejection_reason=MESSAGE_TRANSITIONS[MessageEvent.PROVIDER_FAILED].reason,
    )


def deferring_error(status: ProviderStatus) -> ProviderError | None:
    """The error of a `failed` status that defers the message (the error table's DEFER class:
    131049, 63049), else None."""
    if status.status != FAILED:
        return None
    defers = (e for e in status.errors if classify_code(e.code).retry_class is RetryClass.DEFER)
    return next(defers, None)


def apply_status(message: Lifecycle, status: ProviderStatus) -> tuple[ApplyOutcome, Lifecycle]:
    """Apply one (not duplicate) provider status: what it did, and the message afterwards."""
    if status.status not in TRACKED_STATUSES:
        return ApplyOutcome.UNKNOWN_STATUS, message
    if message.deferred:  # a status of the send before the deferral
        return ApplyOutcome.STALE, message
    reported = MessageState(status.status)
    error = deferring_error(status)
    if error is not None and message.last_attempt:
        exhausted = MESSAGE_TRANSITIONS[MessageEvent.PROVIDER_DEFERRAL_EXHAUSTED]
        if exhausted.allows(message.state):
            failed = replace(_fail(message, status), error=error, rejection_reason=exhausted.reason)
            return ApplyOutcome.APPLIED, failed
    if error is not None and message_step(message.state, MessageEvent.PROVIDER_DEFERRED):
        return ApplyOutcome.APPLIED, Lifecycle(MessageState.QUEUED, error=error, deferred=True)
    target = message_step(message.state, PROVIDER_STATUS_EVENTS[reported])
    if target is MessageState.FAILED:
        return ApplyOutcome.APPLIED, _fail(message, status)
    if target is not None:
        return ApplyOutcome.APPLIED, replace(_fill_timestamp(message, status), state=target)
    # The table forbids the move: say why, and keep what the status still tells us.
    if message.state in NEVER_SENT:
        return ApplyOutcome.AFTER_TERMINAL, message
    if message.state is MessageState.FAILED:
        if reported in (MessageState.SENT, MessageState.DELIVERED):
            return ApplyOutcome.AFTER_TERMINAL, _fill_timestamp(message, status)
        return ApplyOutcome.AFTER_TERMINAL, message
    if reported is MessageState.FAILED:  # after read: final success stands
        return ApplyOutcome.AFTER_TERMINAL, message
    return ApplyOutcome.STALE, _fill_timestamp(message, status)


def replay(
    message: Lifecycle, statuses: Iterable[ProviderStatus]
) -> tuple[Lifecycle, list[ApplyOutcome]]:
    """Apply statuses in arrival order; a status already seen for the message is a duplicate.

    This is the rule's whole answer for one message, which the SQL path must reproduce.
    """
    seen: set[str] = set()
    outcomes: list[ApplyOutcome] = []
    for status in statuses:
        if status.status in seen:
            outcomes.append(ApplyOutcome.DUPLICATE)
            continue
        seen.add(status.status)
        outcome, message = apply_status(message, status)
        outcomes.append(outcome)
    return message, outcomes


def opt_out_source(status: ProviderStatus) -> DnmSource | None:
    """The Do-Not-Message source of a failed status whose error the error table says is an
    opt-out (Meta 131050, Twilio 21610), else None."""
    if status.status != FAILED:
        return None
    return next((s for e in status.errors if (s := classify_code(e.code).opt_out)), None)


def opts_out(status: ProviderStatus) -> bool:
    """A failed status whose error means an opt-out."""
    return opt_out_source(status) is not None
