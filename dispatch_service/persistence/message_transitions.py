"""Every statement that changes ``invite_message.state``, each tied to its transitions.

The message state machine is the table in ``domain/transitions.py``. Each statement here names
the transition(s) it makes; its ``WHERE state IN (...)``, its target state and the rejection
reason it records are read from that table, never typed again. Nothing else in the code base
updates ``invite_message`` (a test greps for it, and the test databases audit every state change
against the table).

A statement that finds its messages by id writes its guard with `_state_in`, which no index can
serve: the planner then reads the primary key, whatever the statistics say about states.

Writes are conditional on the state the writer expects, so a webhook that already moved a message
(ApplyStatus) is never overwritten by a late send result: a late result can only fill a missing
provider id or wa_id. Writes are set-based (one statement per kind of change for a whole batch)
and fire the run-counter triggers like every other writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg
from sqlalchemy import CursorResult, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import HoldReason, MessageState, RunState
from dispatch_service.domain.pricing import Pricing
from dispatch_service.domain.retry import MARKETING_CAP_DEFER_SECONDS
from dispatch_service.domain.status_matching import MatchedMessage
from dispatch_service.domain.transitions import (
    MESSAGE_TRANSITIONS,
    PROVIDER_STATUS_EVENTS,
    RANK,
    MessageEvent,
    allowed_moves,
)
from dispatch_service.persistence.json_param import json_param
from dispatch_service.persistence.state_sql import literal, pending, quoted

E = MessageEvent
T = MESSAGE_TRANSITIONS


def _sources(*events: MessageEvent) -> frozenset[MessageState]:
    """The states any of `events` moves a message from."""
    return frozenset().union(*(T[e].sources for e in events))


def _from(*events: MessageEvent) -> str:
    """The quoted source states of `events` (for ``state IN (...)``)."""
    return quoted(_sources(*events))


def _pending_from(*events: MessageEvent) -> str:
    """``dispatch_state IN (<sources of events>)`` for a statement that finds a run's (or every
    run's) messages by a pending state: the state's partial index answers it (``pending``)."""
    return pending(_sources(*events))


def _state_in(*events: MessageEvent, column: str = "m.state") -> str:
    """``state IN (<sources of events>)`` for a statement that finds its rows by id, written so
    that no index can answer it (``state || ''`` matches no index column and proves no partial
    index's predicate): the planner then looks the ids up in the primary key.

    A plain ``state IN (...)`` let statistics older than the run decide. Taken when next to
    nothing was queued, they made every queued message look rare, and the planner read the
    state indexes (`ix_invite_message_claimable`, then `(run_id, state)`) instead of the ids: every
    queued message of every run for each claim or give back. In the three-sender bench, per
    call: a claim's lease (about 150 messages) 19-28 ms, a give back (about 55) 28 ms; by
    primary key 11-15 ms and 6-10 ms, most of it the writes and their triggers (docs/dispatch.md
    §10)."""
    return f"({column} || '') IN ({_from(*events)})"


def _to(event: MessageEvent) -> str:
    return literal(T[event].target)


def _reason(event: MessageEvent) -> str:
    reason = T[event].reason
    assert reason is not None, f"{event} records no reason"
    return literal(reason)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


# --- the dispatcher's claim -----------------------------------------------------------------


async def block_at_send(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """``blocked_at_send``: claimed messages whose phone joined Do-Not-Message since the
    precheck are blocked with that reason."""
    if ids:
        await session.execute(
            text(
                f"UPDATE invite_message SET state = {_to(E.BLOCKED_AT_SEND)},"
                f" rejection_reason = {_reason(E.BLOCKED_AT_SEND)},"
                " next_attempt_at = NULL, updated_at = now()"
                f" WHERE id = ANY(:ids) AND {_state_in(E.BLOCKED_AT_SEND, column='state')}"
            ),
            {"ids": list(ids)},
        )


# A claim's, a give back's and a result batch's rows travel as one JSON text
# (persistence.json_param): psycopg adapted a list of a few hundred ids and timestamps element
# by element, 3.4% of the send worker's CPU with three senders (py-spy).
LEASE = text(f"""
    UPDATE invite_message m SET state = {_to(E.CLAIMED)}, lease_owner = :owner,
      lease_expires_at = v.lease, hold_reason = NULL, updated_at = now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, lease timestamptz)
    WHERE m.id = v.id AND {_state_in(E.CLAIMED)}
""")


def lease_rows(ids: Sequence[uuid.UUID], lease_expires: Sequence[datetime | None]) -> str:
    """LEASE's and GIVE_BACK's `rows`: each message with the moment its lease ends (GIVE_BACK:
    None gives it back whatever its lease)."""
    return json_param([{"id": i, "lease": e} for i, e in zip(ids, lease_expires, strict=True)])


async def lease_claimed(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    lease_expires: Sequence[datetime],
    owner: str,
) -> None:
    """``claimed``: the messages are leased to `owner` until their lease ends; they stay
    `queued` (nothing is attempted yet), so a replica killed now leaves nothing ambiguous."""
    await session.execute(LEASE, {"rows": lease_rows(ids, lease_expires), "owner": owner})


# In the driver's parameter style: it runs on psycopg's connection, not through a session
# (common.db.engine.driver_autocommit). The call's lease is the claim's, extended: a lease the
# worker knows without the answer (see mark_attempting).
MARK_ATTEMPTING = f"""
    UPDATE invite_message m SET state = {_to(E.ATTEMPTED)},
      attempt_count = m.attempt_count + 1, sending_at = clock_timestamp(),
      lease_expires_at = m.lease_expires_at + %(extension)s,
      next_attempt_at = NULL, provider_message_id = NULL, updated_at = now()
    FROM invite_send_run r
    WHERE m.id = ANY(%(ids)s) AND {_state_in(E.ATTEMPTED)} AND m.lease_owner = %(owner)s
      AND r.id = m.run_id AND r.state = {literal(RunState.DISPATCHING)}
      AND NOT EXISTS (SELECT 1 FROM do_not_message_entry d
                      WHERE d.workspace_id = m.workspace_id AND d.phone_e164 = m.phone_e164
                        AND d.removed_at IS NULL)
    RETURNING m.id, m.lease_expires_at
"""
"""The claim checked Do-Not-Message; the mark checks it again, just before the request leaves: a
STOP that arrived since the claim (up to a claim's lead, about a second) keeps the message from
being sent (the worker gives it back, and the next claim blocks it with its reason)."""


async def mark_attempting(
    connection: psycopg.AsyncConnection[Any],
    ids: Sequence[uuid.UUID],
    owner: str,
    extension: timedelta,
) -> dict[uuid.UUID, datetime]:
    """``attempted``: the at-most-once point, taken just before the request is written (attempt
    + 1, `sending_at`, a lease for the call: the claim's lease + `extension`). Only messages
    still leased by `owner` whose run is dispatching move; those returned (with their new
    lease) may be sent, the others must not.

    On the driver's connection: the worker marks a few messages hundreds of times a second, in
    autocommit (common.db.engine.driver_autocommit), so the rows come back committed. When the
    answer is lost instead, the worker cannot know whether the statement committed; because the
    new lease is the claim's plus a known extension, it still knows the one lease each message
    may now hold, and gives it back under that one too (dispatcher.worker.Marker)."""
    if not ids:
        return {}
    cursor = await connection.execute(
        MARK_ATTEMPTING, {"ids": list(ids), "owner": owner, "extension": extension}
    )
    return {row[0]: row[1] for row in await cursor.fetchall()}


HOLD = text(f"""
    UPDATE invite_message m SET state = {_to(E.HELD)}, next_attempt_at = v.until,
      hold_reason = :reason, updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:untils AS timestamptz[])) AS v(id, until)
    WHERE m.id = v.id AND {_state_in(E.HELD)}
""")


async def hold(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    until: Sequence[datetime],
    reason: HoldReason,
) -> None:
    """``held``: claimed-for messages that may not go yet (quiet hours) stay `queued`, due at
    `until` (one instant per message), with the reason recorded for GetRunStatus."""
    if ids:
        await session.execute(
            HOLD, {"ids": list(ids), "untils": list(until), "reason": reason.value}
        )


HOLD_DUE = text(f"""
    UPDATE invite_message SET state = {_to(E.HELD)}, next_attempt_at = :until,
      hold_reason = :reason, updated_at = now()
    WHERE run_id = :run AND {_pending_from(E.HELD)}
      AND (next_attempt_at IS NULL OR next_attempt_at < :until)
      AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
""")


async def hold_due(
    session: AsyncSession, run_id: uuid.UUID, until: datetime, reason: HoldReason
) -> int:
    """``held``: every queued message of the run due before `until` waits until then (the
    messaging limit is reached); returns how many. Messages a replica holds a live claim on
    are not touched: their slots are taken, they go out."""
    result = await session.execute(
        HOLD_DUE, {"run": run_id, "until": until, "reason": reason.value}
    )
    return _rowcount(result)


# --- send results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptedRow:
    """A provider-accepted message."""

    id: uuid.UUID
    provider_message_id: str
    wa_id: str | None


# States in which a message has been sent (it keeps or gains a sent_at).
_SENT_OR_LATER = quoted({s for s, rank in RANK.items() if rank >= RANK[T[E.ACCEPTED].target]})
RECORD_ACCEPTED = text(f"""
    UPDATE invite_message m SET
      state = CASE WHEN m.state IN ({_from(E.ACCEPTED)}) THEN {_to(E.ACCEPTED)}
                   ELSE m.state END,
      sent_at = CASE WHEN m.state IN ({_from(E.ACCEPTED)}, {_SENT_OR_LATER})
                     THEN coalesce(m.sent_at, clock_timestamp()) ELSE m.sent_at END,
      provider_message_id = CASE WHEN m.state IN ({_from(E.ACCEPTED)}) THEN v.wamid
                                 ELSE coalesce(m.provider_message_id, v.wamid) END,
      wa_id = coalesce(m.wa_id, v.wa_id),
      error_code = CASE WHEN m.state IN ({_from(E.ACCEPTED)}) THEN NULL ELSE m.error_code END,
      error_title = CASE WHEN m.state IN ({_from(E.ACCEPTED)}) THEN NULL ELSE m.error_title END,
      error_details = CASE WHEN m.state IN ({_from(E.ACCEPTED)}) THEN NULL
                           ELSE m.error_details END,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, wamid text, wa_id text)
    WHERE m.id = v.id
""")


async def record_accepted(session: AsyncSession, rows: Sequence[AcceptedRow]) -> None:
    """``accepted``: `sending` -> `sent` (sent_at provisional: the `sent` webhook's timestamp
    replaces it) with this send's provider id (a deferred message's earlier one is replaced).
    A message a webhook already advanced keeps its state; only a missing provider id / wa_id is
    filled in."""
    if not rows:
        return
    batch = [{"id": r.id, "wamid": r.provider_message_id, "wa_id": r.wa_id} for r in rows]
    await session.execute(RECORD_ACCEPTED, {"rows": json_param(batch)})


@dataclass(frozen=True)
class ErrorRow:
    """A message with the provider's (or transport's) error, and the lease it was sent under."""

    id: uuid.UUID
    error_code: int | None
    error_title: str
    error_details: str
    lease: datetime | None = None
    """The mark's lease: the write is a no-op once the message no longer holds it (None: any
    lease of the owner)."""


_RUN_CANCELLED = (
    f"(SELECT r.state FROM invite_send_run r WHERE r.id = m.run_id) = {literal(RunState.CANCELLED)}"
)
"""Whether the message's run was cancelled: a look-up per message, not a join. Joined, the
planner could start from the runs and read each run's messages by state."""

_ERROR_VALUES = """
    unnest(CAST(:ids AS uuid[]), CAST(:codes AS int[]), CAST(:titles AS text[]),
           CAST(:details AS text[]), CAST(:extra AS float8[]), CAST(:leases AS timestamptz[]))
      AS v(id, code, title, details, extra, lease)
"""
# A result is written only while its message holds the lease it was sent under (as GIVE_BACK):
# a batch written again after its COMMIT's answer was lost (the worker retries what it cannot
# know was committed) must not touch a message another attempt has claimed and marked since,
# or a requeue would put that attempt's message back in the queue and it would be sent twice.
_OWN_LEASE = "m.lease_owner = :owner AND (v.lease IS NULL OR m.lease_expires_at = v.lease)"


def _requeue(event: MessageEvent) -> TextClause:
    """`event` (transient_error or halted), or ``stopped_by_cancel`` when the run was cancelled:
    due after each row's delay in seconds; the error is kept for display."""
    return text(f"""
        UPDATE invite_message m SET
          state = CASE WHEN {_RUN_CANCELLED} THEN {_to(E.STOPPED_BY_CANCEL)} ELSE {_to(event)} END,
          next_attempt_at = clock_timestamp() + make_interval(secs => v.extra),
          error_code = v.code, error_title = v.title, error_details = v.details,
          lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        FROM {_ERROR_VALUES}
        WHERE m.id = v.id AND {_state_in(event, E.STOPPED_BY_CANCEL)} AND {_OWN_LEASE}
        RETURNING m.id
    """)


def _fail(event: MessageEvent) -> TextClause:
    """`event`: `sending` -> `failed` with the event's reason and the provider's error."""
    return text(f"""
        UPDATE invite_message m SET state = {_to(event)}, rejection_reason = {_reason(event)},
          failed_at = clock_timestamp(), next_attempt_at = NULL,
          error_code = v.code, error_title = v.title, error_details = v.details,
          lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        FROM {_ERROR_VALUES}
        WHERE m.id = v.id AND {_state_in(event)} AND {_OWN_LEASE}
    """)


REQUEUE = {event: _requeue(event) for event in (E.TRANSIENT_ERROR, E.HALTED, E.DEFERRED)}
FAIL = {event: _fail(event) for event in (E.RETRIES_EXHAUSTED, E.TERMINAL_ERROR)}
AMBIGUOUS = text(f"""
    UPDATE invite_message m SET state = {_to(E.AMBIGUOUS)}, error_code = v.code,
      error_title = v.title, error_details = v.details, lease_owner = NULL,
      lease_expires_at = NULL, updated_at = now()
    FROM {_ERROR_VALUES}
    WHERE m.id = v.id AND {_state_in(E.AMBIGUOUS)} AND {_OWN_LEASE}
""")


def _error_params(
    rows: Sequence[ErrorRow], owner: str, extra: Sequence[float] | None = None
) -> dict[str, Any]:
    return {
        "ids": [r.id for r in rows],
        "codes": [r.error_code for r in rows],
        "titles": [r.error_title for r in rows],
        "details": [r.error_details for r in rows],
        "extra": list(extra) if extra is not None else [0.0] * len(rows),
        "leases": [r.lease for r in rows],
        "owner": owner,
    }


async def record_requeued(
    session: AsyncSession, rows: Sequence[ErrorRow], delays: Sequence[float], owner: str
) -> None:
    """``transient_error`` (or ``stopped_by_cancel``): back to `queued`, due after each row's
    delay in seconds; the error is kept for display."""
    if rows:
        await session.execute(REQUEUE[E.TRANSIENT_ERROR], _error_params(rows, owner, delays))


async def record_deferred(
    session: AsyncSession, rows: Sequence[ErrorRow], delay_seconds: float, owner: str
) -> None:
    """``deferred`` (or ``stopped_by_cancel``): Meta's per-user marketing cap (131049); back to
    `queued`, due `delay_seconds` later, held for marketing_limit (GetRunStatus counts them)."""
    if rows:
        requeued = await session.execute(
            REQUEUE[E.DEFERRED], _error_params(rows, owner, [delay_seconds] * len(rows))
        )
        await session.execute(
            text(
                f"UPDATE invite_message SET state = {_to(E.HELD)},"
                f" hold_reason = {literal(HoldReason.MARKETING_LIMIT)}"
                f" WHERE id = ANY(:ids) AND {_state_in(E.HELD, column='state')}"
            ),
            {"ids": list(requeued.scalars())},
        )


async def record_halted(
    session: AsyncSession, rows: Sequence[ErrorRow], owner: str
) -> set[uuid.UUID]:
    """``halted`` (or ``stopped_by_cancel``): back to `queued` (not sent), due at once after a
    resume, with the error for display. Returns the messages it moved (their runs pause)."""
    if not rows:
        return set()
    return set((await session.execute(REQUEUE[E.HALTED], _error_params(rows, owner))).scalars())


async def record_failed(
    session: AsyncSession, rows: Sequence[ErrorRow], event: E, owner: str
) -> None:
    """``retries_exhausted`` or ``terminal_error``: `sending` -> `failed` with the reason of
    the transition and the provider's code, title and details."""
    if rows:
        await session.execute(FAIL[event], _error_params(rows, owner))


async def record_ambiguous(session: AsyncSession, rows: Sequence[ErrorRow], owner: str) -> None:
    """``ambiguous``: stays `sending` (never re-sent); the lease ends so the reconciler may
    fail it later."""
    if rows:
        await session.execute(AMBIGUOUS, _error_params(rows, owner))


GIVE_BACK = text(f"""
    UPDATE invite_message m SET
      state = CASE WHEN {_RUN_CANCELLED} THEN {_to(E.STOPPED_BY_CANCEL)} ELSE {_to(E.RELEASED)} END,
      attempt_count = CASE WHEN m.state IN ({_from(E.STOPPED_BY_CANCEL)})
                           THEN greatest(m.attempt_count - 1, 0) ELSE m.attempt_count END,
      sending_at = CASE WHEN m.state IN ({_from(E.STOPPED_BY_CANCEL)})
                        THEN NULL ELSE m.sending_at END,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(id uuid, lease timestamptz)
    WHERE m.id = v.id AND {_state_in(E.RELEASED, E.STOPPED_BY_CANCEL)}
      AND m.lease_owner = :owner AND (v.lease IS NULL OR m.lease_expires_at = v.lease)
""")


async def give_back_unsent(
    session: AsyncSession, leases: Sequence[tuple[uuid.UUID, datetime | None]], owner: str
) -> None:
    """``released`` (or ``stopped_by_cancel``): messages this replica claimed or marked but
    never wrote a request for go back to `queued` (`cancelled` when their run was cancelled
    meanwhile), lease cleared; a `sending` one gets its attempt back. Each is given back only
    while it still holds the lease it was claimed or marked under (a message may be listed
    twice, with its claim's lease and the lease of a mark whose commit failed but may have
    happened): a give back written late (after a database outage) never undoes a newer claim
    of the same message that was sent."""
    if leases:
        rows = lease_rows([i for i, _ in leases], [lease for _, lease in leases])
        await session.execute(GIVE_BACK, {"rows": rows, "owner": owner})


# --- reconciliation and cancellation --------------------------------------------------------

FAIL_UNKNOWN_OUTCOMES = text(f"""
    WITH due AS (
      SELECT id FROM invite_message
      WHERE {_pending_from(E.OUTCOME_WINDOW_ELAPSED)}
        AND sending_at < clock_timestamp() - make_interval(secs => :window)
        AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
      ORDER BY id
      FOR UPDATE SKIP LOCKED)
    UPDATE invite_message m SET state = {_to(E.OUTCOME_WINDOW_ELAPSED)},
      rejection_reason = {_reason(E.OUTCOME_WINDOW_ELAPSED)},
      failed_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,
      updated_at = now()
    FROM due WHERE m.id = due.id
    RETURNING m.id, m.run_id
""")


async def fail_unknown_outcomes(
    session: AsyncSession, window_seconds: float
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``outcome_window_elapsed``: messages `sending` for longer than the window and no longer
    leased fail as outcome_unknown. Returns (message id, run id) of each."""
    rows = await session.execute(FAIL_UNKNOWN_OUTCOMES, {"window": window_seconds})
    return [(r.id, r.run_id) for r in rows]


# Cancelling never waits on a message another transaction holds (a send worker marking it
# `sending`, writing its result, a status being applied): waiting would lock the run's messages
# in an order of its own against the worker's, which can deadlock. What it skips either leaves
# `queued` no more (the call was made; its outcome is recorded as usual) or is cancelled by the
# reconciler's cancel_stragglers a moment later.
#
# Nor does it hold many messages at once: one transaction cancels at most CANCEL_BATCH of them.
# One statement cancelling a 90,000-message run held their locks for 3.4-4.6 s, and the send
# worker's mark and claims, which serve every sender, waited behind it all that time.
CANCEL_BATCH = 5_000
CANCEL_QUEUED = text(f"""
    WITH due AS (
      SELECT id FROM invite_message
      WHERE run_id = :run AND {_pending_from(E.CANCELLED)}
      LIMIT :limit
      FOR UPDATE SKIP LOCKED)
    UPDATE invite_message m SET state = {_to(E.CANCELLED)}, updated_at = now(),
      lease_owner = NULL, lease_expires_at = NULL
    FROM due WHERE m.id = due.id
""")
# The reconciler's two statements start from the few runs concerned and read each one's queued
# messages through its index (LATERAL): joined, stale statistics let the planner start from
# every queued message of every run instead (36-45 ms a call, every second, during a big run).
CANCEL_STRAGGLERS = text(f"""
    WITH runs AS MATERIALIZED (
      SELECT id FROM invite_send_run
      WHERE state = {literal(RunState.CANCELLED)} AND finished_at > now() - interval '1 hour'),
    due AS (
      SELECT q.id FROM runs, LATERAL (
        SELECT id FROM invite_message
        WHERE run_id = runs.id AND {_pending_from(E.CANCELLED)}
        LIMIT :limit
        FOR UPDATE SKIP LOCKED) q)
    UPDATE invite_message m SET state = {_to(E.CANCELLED)}, updated_at = now(),
      lease_owner = NULL, lease_expires_at = NULL
    FROM due WHERE m.id = due.id AND {_state_in(E.CANCELLED)}
""")


async def cancel_stragglers(session: AsyncSession) -> int:
    """``cancelled``: queued messages of runs cancelled in the last hour (CancelRun skipped
    them while another transaction held them, stopped before its last batch, or a result
    written while the run was being cancelled queued one again), at most CANCEL_BATCH of each
    run per call."""
    return _rowcount(await session.execute(CANCEL_STRAGGLERS, {"limit": CANCEL_BATCH}))


EXPIRE_PAST_DEADLINE = text(f"""
    WITH runs AS MATERIALIZED (
      SELECT id FROM invite_send_run
      WHERE deadline IS NOT NULL AND finished_at IS NULL
        AND deadline <= coalesce(CAST(:now AS timestamptz), clock_timestamp())),
    due AS (
      SELECT q.id FROM runs, LATERAL (
        SELECT id FROM invite_message
        WHERE run_id = runs.id AND {_pending_from(E.EXPIRED)}
        FOR UPDATE) q)
    UPDATE invite_message m SET state = {_to(E.EXPIRED)}, rejection_reason = {_reason(E.EXPIRED)},
      failed_at = clock_timestamp(), next_attempt_at = NULL, updated_at = now()
    FROM due WHERE m.id = due.id AND {_state_in(E.EXPIRED)}
    RETURNING m.run_id
""")


async def expire_past_deadline(
    session: AsyncSession, now: datetime | None = None
) -> dict[uuid.UUID, int]:
    """``expired``: queued messages of runs whose deadline passed (at `now`, default the
    database clock) fail with reason expired; how many per run. A message `sending` at the
    deadline is not touched: its call was made and its outcome is recorded as usual."""
    rows = await session.execute(EXPIRE_PAST_DEADLINE, {"now": now})
    counts: dict[uuid.UUID, int] = {}
    for r in rows:
        counts[r.run_id] = counts.get(r.run_id, 0) + 1
    return counts


async def cancel_queued(session: AsyncSession, run_id: uuid.UUID) -> int:
    """``cancelled``: up to CANCEL_BATCH of the run's queued messages not held by another
    transaction (CancelRun; see CANCEL_QUEUED); returns how many. Fewer than CANCEL_BATCH: none
    is left but those another transaction held."""
    return _rowcount(await session.execute(CANCEL_QUEUED, {"run": run_id, "limit": CANCEL_BATCH}))


COUNT_CANCELLABLE = text(
    f"SELECT count(*) FROM invite_message WHERE run_id = :run AND {_pending_from(E.CANCELLED)}"
)


async def count_cancellable(session: AsyncSession, run_id: uuid.UUID) -> int:
    """How many of the run's messages a cancel would cancel (its queued ones)."""
    return int(await session.scalar(COUNT_CANCELLABLE, {"run": run_id}) or 0)


async def block_already_invited(
    session: AsyncSession, run_id: uuid.UUID, phones: Sequence[str]
) -> int:
    """``blocked_already_invited``: the run's queued messages to `phones` (StartRun found
    another run invited them since the precheck); returns how many."""
    result = await session.execute(
        text(
            f"UPDATE invite_message SET state = {_to(E.BLOCKED_ALREADY_INVITED)},"
            f" rejection_reason = {_reason(E.BLOCKED_ALREADY_INVITED)}"
            f" WHERE run_id = :run AND state IN ({_from(E.BLOCKED_ALREADY_INVITED)})"
            " AND phone_e164 = ANY(CAST(:phones AS text[]))"
        ),
        {"run": run_id, "phones": list(phones)},
    )
    return _rowcount(result)


# --- provider statuses (ApplyStatus) --------------------------------------------------------

PROVIDER_EVENTS = (
    *PROVIDER_STATUS_EVENTS.values(),
    E.PROVIDER_DEFERRED,
    E.PROVIDER_DEFERRAL_EXHAUSTED,
)
PROVIDER_MOVES = allowed_moves({e: T[e] for e in PROVIDER_EVENTS})
"""The (from, to) pairs a provider status may make (``provider_*`` transitions)."""

# A deferred message (``provider_deferred``) waits `defer` seconds, held for the marketing limit,
# its previous send's sent time forgotten (its provider id stays until the next send is marked,
# so that send's late statuses still find it meanwhile, and are stale; the mark clears it, so the
# next send's statuses find the message by callback data even when that send's answer is lost).
WRITE_PROVIDER_STATUSES = text(f"""
    UPDATE invite_message AS m
    SET state = v.state, sent_at = v.sent_at, delivered_at = v.delivered_at,
        read_at = v.read_at, failed_at = v.failed_at, error_code = v.error_code,
        error_title = v.error_title, error_details = v.error_details,
        rejection_reason = v.rejection_reason, provider_message_id = v.wamid, wa_id = v.wa_id,
        next_attempt_at = CASE WHEN v.deferred
                               THEN clock_timestamp() + make_interval(secs => :defer)
                               ELSE m.next_attempt_at END,
        hold_reason = CASE WHEN v.deferred THEN {literal(HoldReason.MARKETING_LIMIT)}
                           ELSE m.hold_reason END,
        updated_at = now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(id uuid, before text, state text, sent_at timestamptz, delivered_at timestamptz,
              read_at timestamptz, failed_at timestamptz, error_code int, error_title text,
              error_details text, rejection_reason text, wamid text, wa_id text,
              deferred boolean)
    WHERE m.id = v.id AND m.state = v.before
""")


def _status_row(message: MatchedMessage) -> dict[str, Any]:
    before, after = message.before.state, message.after.state
    if before != after and (before, after) not in PROVIDER_MOVES:
        raise ValueError(f"no provider transition moves a message from {before} to {after}")
    error = message.after.error
    return {
        "id": message.id,
        "before": before.value,
        "state": after.value,
        "sent_at": message.after.sent_at,
        "delivered_at": message.after.delivered_at,
        "read_at": message.after.read_at,
        "failed_at": message.after.failed_at,
        "error_code": error.code if error else None,
        "error_title": error.title if error else None,
        "error_details": error.details if error else None,
        "rejection_reason": message.after.rejection_reason,
        "wamid": message.provider_message_id,
        "wa_id": message.wa_id,
        "deferred": message.after.deferred and not message.before.deferred,
    }


async def write_provider_statuses(
    session: AsyncSession,
    messages: Iterable[MatchedMessage],
    defer_seconds: float = MARKETING_CAP_DEFER_SECONDS,
) -> list[uuid.UUID]:
    """``provider_sent`` / ``provider_delivered`` / ``provider_read`` / ``provider_failed`` /
    ``provider_deferred`` (and the timestamps, ids and errors statuses fill without a move):
    write back each changed message of an ApplyStatus batch; a deferred one is due again
    `defer_seconds` from now. The rows are locked by the caller; a move outside the table is a
    bug and raises before anything is written. Returns the ids of the deferred messages."""
    rows = [_status_row(m) for m in messages if m.changed]
    if rows:
        await session.execute(
            WRITE_PROVIDER_STATUSES,
            {"rows": json_param(rows), "defer": defer_seconds},
        )
    return [row["id"] for row in rows if row["deferred"]]


# --- pricing (no state change) ----------------------------------------------------------------

RECORD_PRICING = text("""
    UPDATE invite_message AS m
    SET pricing_billable = v.billable, pricing_category = v.category,
        pricing_model = v.model, pricing_type = v.type
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(id uuid, billable boolean, category text, model text, type text)
    WHERE m.id = v.id AND m.pricing_category IS NULL
""")


async def record_pricing(session: AsyncSession, rows: Sequence[tuple[uuid.UUID, Pricing]]) -> None:
    """Keep the first pricing block reported for each message (Meta may repeat it on sent,
    delivered and read; it is recorded once per message). Changes no state. The caller holds
    the rows' locks (ApplyStatus)."""
    first: dict[uuid.UUID, Pricing] = {}
    for message_id, block in rows:
        first.setdefault(message_id, block)
    if first:
        payload = [
            {
                "id": i,
                "billable": p.billable,
                "category": p.category,
                "model": p.model,
                "type": p.type,
            }
            for i, p in sorted(first.items())
        ]
        await session.execute(RECORD_PRICING, {"rows": json_param(payload)})
