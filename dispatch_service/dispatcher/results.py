"""Writing a batch of send outcomes: one transaction, a few set-based statements.

Per outcome class (dispatch_service.domain.retry):

* accepted: `sent` + wamid + wa_id (conditional: never regresses what a webhook already did),
  then the ingestor's `apply_orphaned_statuses` in the same transaction, so statuses that
  arrived before the wamid was stored are applied now;
* transient / recipient back-off: `queued` again with next_attempt_at, or `failed`
  (retries_exhausted) once the attempts are used up;
* terminal: `failed` (provider_rejected); an opt-out error (131050) also adds the phone to
  Do-Not-Message through the one writer (scope: every workspace sending from the number);
* defer (131049, Meta's per-user marketing cap): `queued` again, due `defer_seconds` later;
* halt: the message goes back to `queued` and its run is paused with the reason;
* ambiguous: stays `sending`, lease released; the reconciler or a webhook settles it;
* released (claimed, never sent: run stopped, shutting down, its send window passed before the
  request could be written): back to `queued` with the attempt given back.

Messages are locked in id order first, like ApplyStatus does, so the two never deadlock.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.dispatcher.claims import ClaimedMessage
from dispatch_service.dispatcher.metrics import RETRIES, RUN_TRANSITIONS, SENDS
from dispatch_service.domain.do_not_message import DoNotMessageRequest, provider_opt_out
from dispatch_service.domain.retry import (
    MARKETING_CAP_DEFER_SECONDS,
    Backoff,
    NextStep,
    RetryClass,
    classify_code,
    decide,
)
from dispatch_service.domain.runs import pause_reason
from dispatch_service.domain.transitions import MessageEvent
from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.claims import lock_messages
from dispatch_service.persistence.do_not_message import add_entries
from dispatch_service.persistence.message_transitions import (
    AcceptedRow,
    ErrorRow,
    give_back_unsent,
    record_accepted,
    record_ambiguous,
    record_deferred,
    record_failed,
    record_halted,
    record_requeued,
)
from dispatch_service.persistence.status import apply_orphaned_statuses
from dispatch_service.providers.base import Accepted, Failed, NotSent, SendOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Released:
    """The message was claimed but never sent (its run stopped, or the replica is stopping)."""

    retry_class: RetryClass | None = None
    possible_lease: datetime | None = None
    """A mark's lease the message may hold although the mark's commit failed (given back
    under it too)."""
    throttled: bool = False
    """Its slot was handed out before a 130429 lowered the sender's rate: given back on
    purpose, not lost to a late worker (counted as `throttled`, not `released`)."""


Outcome = SendOutcome | Released


@dataclass(frozen=True)
class Result:
    """One claimed message and what became of it."""

    message: ClaimedMessage
    outcome: Outcome


@dataclass(frozen=True)
class RetryPolicy:
    """The bounded retries of transient errors."""

    max_attempts: int
    backoff: Backoff
    defer_seconds: float = MARKETING_CAP_DEFER_SECONDS
    """How long a message waits after Meta's per-user marketing cap (131049)."""


@dataclass
class BatchEffects:
    """What a written batch means beyond its rows: runs paused, senders throttled."""

    paused_runs: set[uuid.UUID] = field(default_factory=set)
    throttled_senders: set[str] = field(default_factory=set)


@dataclass
class _Plan:
    accepted: list[AcceptedRow] = field(default_factory=list)
    requeued: list[ErrorRow] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    exhausted: list[ErrorRow] = field(default_factory=list)
    rejected: list[ErrorRow] = field(default_factory=list)
    halted: list[ErrorRow] = field(default_factory=list)
    halted_runs: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    """Each halted message's run."""
    deferred: list[ErrorRow] = field(default_factory=list)
    ambiguous: list[ErrorRow] = field(default_factory=list)
    released: list[tuple[uuid.UUID, datetime | None]] = field(default_factory=list)
    opt_outs: list[DoNotMessageRequest] = field(default_factory=list)
    pauses: dict[uuid.UUID, str] = field(default_factory=dict)
    throttled: set[str] = field(default_factory=set)


def _error_row(message: ClaimedMessage, failed: Failed) -> ErrorRow:
    return ErrorRow(
        message.id, failed.error_code, failed.error_title, failed.error_details, message.lease
    )


def plan(results: Sequence[Result], policy: RetryPolicy, rng: random.Random) -> _Plan:
    """Sort a batch of results into the writes they need (pure)."""
    writes = _Plan()
    for result in results:
        message, outcome = result.message, result.outcome
        if isinstance(outcome, Released | NotSent):
            writes.released.append((message.id, message.lease))
            if isinstance(outcome, Released) and outcome.possible_lease is not None:
                writes.released.append((message.id, outcome.possible_lease))
        elif isinstance(outcome, Accepted):
            writes.accepted.append(
                AcceptedRow(message.id, outcome.provider_message_id, outcome.recipient_id)
            )
        else:
            _plan_failure(writes, message, outcome, policy, rng)
    return writes


def _plan_failure(
    writes: _Plan,
    message: ClaimedMessage,
    failed: Failed,
    policy: RetryPolicy,
    rng: random.Random,
) -> None:
    row = _error_row(message, failed)
    if failed.lowers_rate:
        writes.throttled.add(message.run.sender)
    decision = decide(
        failed.retry_class,
        message.attempt,
        max_attempts=policy.max_attempts,
        backoff=policy.backoff,
        rng=rng,
    )
    if decision.step is NextStep.REQUEUE:
        writes.requeued.append(row)
        writes.delays.append(decision.delay_seconds)
    elif decision.step is NextStep.FAIL_RETRIES_EXHAUSTED:
        writes.exhausted.append(row)
    elif decision.step is NextStep.FAIL_REJECTED:
        writes.rejected.append(row)
        # the provider classified the code as an opt-out; the table names its source
        source = (
            classify_code(failed.error_code).opt_out
            if failed.adds_do_not_message and failed.error_code
            else None
        )
        if source is not None:
            writes.opt_outs.append(
                provider_opt_out(
                    message.run.sender,
                    message.phone_e164,
                    source,
                    message_id=message.id,
                    run_id=message.run.id,
                )
            )
    elif decision.step is NextStep.DEFER:
        writes.deferred.append(row)
    elif decision.step is NextStep.PAUSE_RUN:
        writes.halted.append(row)
        writes.halted_runs[message.id] = message.run.id
        meaning = classify_code(failed.error_code).meaning if failed.error_code else ""
        writes.pauses[message.run.id] = pause_reason(
            failed.error_code, failed.error_title, meaning or failed.error_details
        )
    else:
        writes.ambiguous.append(row)


async def write_results(
    session: AsyncSession,
    results: Sequence[Result],
    policy: RetryPolicy,
    owner: str,
    rng: random.Random,
) -> BatchEffects:
    """Write one batch of outcomes in the caller's transaction."""
    writes = plan(results, policy, rng)
    await lock_messages(session, [r.message.id for r in results])
    await record_accepted(session, writes.accepted)
    if writes.accepted:
        await apply_orphaned_statuses(
            session, [row.id for row in writes.accepted], policy.defer_seconds, policy.max_attempts
        )
    await record_requeued(session, writes.requeued, writes.delays, owner)
    await record_failed(session, writes.exhausted, MessageEvent.RETRIES_EXHAUSTED, owner)
    await record_failed(session, writes.rejected, MessageEvent.TERMINAL_ERROR, owner)
    await add_entries(session, writes.opt_outs)
    halted = await record_halted(session, writes.halted, owner)
    await record_deferred(session, writes.deferred, policy.defer_seconds, owner)
    await record_ambiguous(session, writes.ambiguous, owner)
    await give_back_unsent(session, writes.released, owner)
    effects = BatchEffects(throttled_senders=set(writes.throttled))
    # Only the runs of messages this write halted: a batch written again (its first COMMIT's
    # answer lost) must not pause a run an operator resumed meanwhile.
    for run_id in sorted({writes.halted_runs[message_id] for message_id in halted}):
        if await run_transitions.pause(session, run_id, writes.pauses[run_id]):
            effects.paused_runs.add(run_id)
    return effects


def observe(results: Sequence[Result], effects: BatchEffects) -> None:
    """Metrics and log lines for a batch that was written."""
    by_class: dict[str, int] = defaultdict(int)
    for result in results:
        outcome, message = result.outcome, result.message
        extra = {"run_id": message.run.id, "message_id": message.id}
        if isinstance(outcome, Released) and outcome.throttled:
            by_class["throttled"] += 1
        elif isinstance(outcome, Released | NotSent):
            by_class["released"] += 1
        elif isinstance(outcome, Accepted):
            by_class["accepted"] += 1
            log.debug("accepted as %s", outcome.provider_message_id, extra=extra)
        else:
            by_class[outcome.retry_class.value] += 1
            if outcome.retry_class in (RetryClass.TRANSIENT, RetryClass.RECIPIENT_BACKOFF):
                RETRIES.labels(outcome.retry_class.value).inc()
            log.info(
                "send %s: %s %s",
                outcome.retry_class.value,
                outcome.error_code,
                outcome.error_title,
                extra=extra,
            )
    for outcome_class, count in by_class.items():
        SENDS.labels(outcome_class).inc(count)
    for run_id in effects.paused_runs:
        RUN_TRANSITIONS.labels("paused").inc()
        log.warning("run paused by a provider error", extra={"run_id": run_id})
