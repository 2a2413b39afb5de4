"""ExportRunMessages: every recipient of a run, in audience order, in batches.

Each batch is its own short read (keyset on the audience position), so memory stays flat
whatever the run's size and no transaction stays open while the client reads slowly. Any role
may export; the run must be in the actor's workspace.

A run whose messages StartRun is still creating is finished first (what the background batches
or a reconciler would do, under the same per-run lock): the keyset walks positions in order,
and a run part-created has holes in them, so an export then would silently leave recipients out.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.persistence.actors import load_actor
from dispatch_service.persistence.exports import export_batch
from dispatch_service.persistence.runs import load_run
from dispatch_service.read_models import ExportRow
from dispatch_service.use_cases.runs import finish_messages

EXPORT_BATCH_SIZE = 5000


async def export_run_messages(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    run_id: uuid.UUID,
    batch_size: int = EXPORT_BATCH_SIZE,
) -> AsyncIterator[list[ExportRow]]:
    """The run's recipients, batch by batch."""
    async with sessions() as session:
        actor = await load_actor(session, actor_id)
        run = await load_run(session, actor.workspace_id, run_id)
    if run.next_candidate_position is not None:
        await finish_messages(sessions, run_id)
    after = -1
    while True:
        async with sessions() as session:
            rows = await export_batch(session, run_id, after, batch_size)
        if rows:
            yield rows
            after = rows[-1].position
        if len(rows) < batch_size:
            return
