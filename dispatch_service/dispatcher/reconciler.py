"""The reconciler: settles what no send result will (every replica runs it; all steps are
idempotent conditional updates, so replicas running it at once do no harm).

* Unknown outcomes: a message still `sending` `outcome_unknown_seconds` after its call and no
  longer leased (the call ended ambiguously, or the replica that made it died) is failed with
  reason outcome_unknown. It is never sent again: Meta offers no way to ask whether it went out,
  and a duplicate invitation is the failure this system exists to avoid. A webhook arriving
  before the window ends settles it instead (ApplyStatus matches by wamid or callback data).
* Cancelled runs: a queued message left behind by the cancel (it skips messages another
  transaction holds) or queued again by a result written during it.
* Scheduled runs: a `scheduled` run whose send_at has come is queued (one conditional UPDATE,
  so whichever replica is up starts it, once); the claim loop picks it up on its next refresh.
* Deadlines: queued messages of a run whose deadline passed fail with reason expired.
* Unfinished runs: a run whose StartRun died after committing the run and its first messages
  gets the rest of its messages (persistence/runs), once its creation made no progress for
  UNFINISHED_IDLE_SECONDS (a live StartRun is still at it); last in the pass, for at most
  UNFINISHED_BUDGET_SECONDS, so the steps above never wait behind a large run.
* Completion: an active run with every message created and none queued or sending is completed.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import outside_transaction
from dispatch_service.dispatcher.metrics import OUTCOME_UNKNOWN, QUEUE_DEPTH, RUN_TRANSITIONS
from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.claims import queue_depth
from dispatch_service.persistence.message_transitions import (
    cancel_stragglers,
    expire_past_deadline,
    fail_unknown_outcomes,
)
from dispatch_service.persistence.runs import create_more_messages, runs_left_unfinished

log = logging.getLogger(__name__)

UNFINISHED_IDLE_SECONDS = 5.0
UNFINISHED_BUDGET_SECONDS = 2.0


class Reconciler:
    """One pass settles unknown outcomes, cancelled stragglers, due scheduled runs, deadlines
    and finished runs."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], outcome_unknown_seconds: float
    ) -> None:
        self.sessions = sessions
        self.outcome_unknown_seconds = outcome_unknown_seconds

    async def reconcile(self) -> None:
        """One pass (four short transactions, more for an unfinished run)."""
        async with self.sessions() as session, session.begin():
            due = await run_transitions.promote_due(session)
            expired = await expire_past_deadline(session)
        for run_id in due:
            RUN_TRANSITIONS.labels("due").inc()
            log.info("scheduled run is due: queued", extra={"run_id": run_id})
        for run_id, count in expired.items():
            log.info("%d unsent messages expired at the deadline", count, extra={"run_id": run_id})
        async with self.sessions() as session, session.begin():
            unknown = await fail_unknown_outcomes(session, self.outcome_unknown_seconds)
            await cancel_stragglers(session)
        for message_id, run_id in unknown:
            log.warning(
                "no outcome known for a send after the window: failed as outcome_unknown",
                extra={"run_id": run_id, "message_id": message_id},
            )
        OUTCOME_UNKNOWN.inc(len(unknown))
        async with self.sessions() as session, session.begin():
            completed = await run_transitions.complete_finished(session)
        for run_id in completed:
            RUN_TRANSITIONS.labels("completed").inc()
            log.info("run completed", extra={"run_id": run_id})
        async with outside_transaction(self.sessions) as session:
            QUEUE_DEPTH.set(await queue_depth(session))
        await self._finish_runs_left_unfinished()

    async def _finish_runs_left_unfinished(self) -> None:
        """Create messages of unfinished runs for at most UNFINISHED_BUDGET_SECONDS a pass (the
        other steps wait for the next pass meanwhile); one run failing does not stop others."""
        async with outside_transaction(self.sessions) as session:
            unfinished = await runs_left_unfinished(session, UNFINISHED_IDLE_SECONDS)
        budget_ends = time.monotonic() + UNFINISHED_BUDGET_SECONDS
        for run_id in unfinished:
            log.warning("finishing the messages a StartRun left undone", extra={"run_id": run_id})
            done: bool | None = False
            try:
                while done is False and time.monotonic() < budget_ends:
                    async with self.sessions() as session, session.begin():
                        # None: another process is creating them now.
                        done = await create_more_messages(session, run_id, wait=False)
            except Exception as error:
                log.warning(
                    "could not finish a run's messages: %s", error, extra={"run_id": run_id}
                )
