"""Every statement that changes ``invite_send_run.state``, each tied to its transition.

The run state machine is the table in ``domain/transitions.py``; each statement's
``WHERE state IN (...)`` and target come from it. Nothing else updates a run's state (a test
greps for it, and the test databases audit every state change against the table).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.runs import PENDING_MESSAGE_STATES
from dispatch_service.domain.transitions import RUN_TRANSITIONS, RunEvent
from dispatch_service.persistence.state_sql import literal, pending, quoted

E = RunEvent
T = RUN_TRANSITIONS


def _from(event: RunEvent) -> str:
    return quoted(T[event].sources)


def _to(event: RunEvent) -> str:
    return literal(T[event].target)


PROMOTE_DUE = text(f"""
    UPDATE invite_send_run SET state = {_to(E.DUE)}, updated_at = now()
    WHERE state IN ({_from(E.DUE)})
      AND send_at <= coalesce(CAST(:now AS timestamptz), clock_timestamp())
    RETURNING id
""")
START = text(
    f"UPDATE invite_send_run SET state = {_to(E.STARTED)}, updated_at = now()"
    f" WHERE id = :run AND state IN ({_from(E.STARTED)})"
)
PAUSE = text(
    f"UPDATE invite_send_run SET state = {_to(E.PAUSED)}, pause_reason = :reason,"
    f" updated_at = now() WHERE id = :run AND state IN ({_from(E.PAUSED)})"
)
RESUME = text(
    f"UPDATE invite_send_run SET state = {_to(E.RESUMED)}, pause_reason = NULL,"
    f" updated_at = now() WHERE id = :run AND state IN ({_from(E.RESUMED)})"
)
CANCEL = text(
    f"UPDATE invite_send_run SET state = {_to(E.CANCELLED)}, pause_reason = NULL,"
    f" updated_at = now(), finished_at = now() WHERE id = :run AND state IN ({_from(E.CANCELLED)})"
)
# One NOT EXISTS per pending state: each reads that state's partial index (queued: claimable,
# sending: unresolved_sending), a probe whatever the run's size; no index of the table covers
# (run_id, state) for all states (migration 0019).
_NOTHING_PENDING = " AND ".join(
    "NOT EXISTS (SELECT 1 FROM invite_message m WHERE m.run_id = r.id"
    f" AND {pending([s], 'm.dispatch_state')})"
    for s in sorted(PENDING_MESSAGE_STATES)
)
COMPLETE = text(f"""
    UPDATE invite_send_run r SET state = {_to(E.COMPLETED)}, finished_at = now(),
      updated_at = now()
    WHERE r.state IN ({_from(E.COMPLETED)}) AND (CAST(:run AS uuid) IS NULL OR r.id = :run)
      AND r.next_candidate_position IS NULL AND {_NOTHING_PENDING}
    RETURNING r.id
""")


REOPEN = text(f"""
    UPDATE invite_send_run r SET state = {_to(E.REOPENED)}, finished_at = NULL,
      updated_at = now()
    WHERE r.state IN ({_from(E.REOPENED)})
      AND r.id IN (SELECT m.run_id FROM invite_message m WHERE m.id = ANY(:ids))
    RETURNING r.id
""")


RUNS_CHANNEL = "invite_runs"
"""The Postgres NOTIFY channel a transaction that made a run claimable signals on commit
(dispatcher/run_wakeups.py listens, so workers claim at once instead of at their next
refresh)."""
WAKE = text(f"SELECT pg_notify('{RUNS_CHANNEL}', '')")


async def wake_dispatchers(session: AsyncSession) -> None:
    """Signal, when this transaction commits, that a run became claimable (Postgres folds the
    signals of one transaction into one)."""
    await session.execute(WAKE)


def _changed(result: Any) -> bool:
    return cast(CursorResult[Any], result).rowcount > 0


async def promote_due(session: AsyncSession, now: datetime | None = None) -> list[uuid.UUID]:
    """``due``: scheduled runs whose send_at has come (at `now`, default the database clock)
    are queued, so the dispatcher claims them; their ids. One conditional UPDATE: replicas
    running it at once promote each run once."""
    promoted = [r.id for r in await session.execute(PROMOTE_DUE, {"now": now})]
    if promoted:
        await wake_dispatchers(session)
    return promoted


async def start(session: AsyncSession, run_id: uuid.UUID) -> bool:
    """``started``: a queued run's first claim makes it dispatching."""
    return _changed(await session.execute(START, {"run": run_id}))


async def pause(session: AsyncSession, run_id: uuid.UUID, reason: str) -> bool:
    """``paused``: an active run stops with `reason`; False when it was not active any more."""
    return _changed(await session.execute(PAUSE, {"run": run_id, "reason": reason}))


async def resume(session: AsyncSession, run_id: uuid.UUID) -> bool:
    """``resumed``: a paused run dispatches again (ResumeRun)."""
    resumed = _changed(await session.execute(RESUME, {"run": run_id}))
    if resumed:
        await wake_dispatchers(session)
    return resumed


async def cancel(session: AsyncSession, run_id: uuid.UUID) -> bool:
    """``cancelled``: CancelRun (the caller cancels its queued messages in the same
    transaction)."""
    return _changed(await session.execute(CANCEL, {"run": run_id}))


async def complete_finished(
    session: AsyncSession, run_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """``completed``: active runs (or just `run_id`) with no message pending; their ids."""
    rows = await session.execute(COMPLETE, {"run": run_id})
    return [r.id for r in rows]


async def reopen_for(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """``reopened``: completed runs of `message_ids` (messages a provider deferred back into
    the queue) dispatch again; their ids."""
    if not message_ids:
        return []
    reopened = [r.id for r in await session.execute(REOPEN, {"ids": list(message_ids)})]
    if reopened:
        await wake_dispatchers(session)
    return reopened
