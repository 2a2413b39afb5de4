"""A give back written late never undoes a newer claim of the same message.

After a database outage a replica may write the give back of a claim whose lease ran out while,
meanwhile, the same message was claimed again, marked `sending` and sent. The give back names
the lease it was made under, so it is a no-op then (else the message would go back to `queued`
and be sent a second time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.message_transitions import (
    give_back_unsent,
    lease_claimed,
    mark_attempting,
)
from tests.integration.dispatch_support import precheck_and_start, seed_world

OWNER = "replica-a"


async def test_a_late_give_back_of_an_old_lease_leaves_the_newer_attempt_alone(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    run = (await precheck_and_start(sessions, world)).run
    async with sessions() as session, session.begin():
        await run_transitions.start(session, run.id)
        message_id = await session.scalar(
            text("SELECT id FROM invite_message WHERE run_id = :run"), {"run": run.id}
        )
        old_lease = datetime(2030, 1, 1, tzinfo=UTC)
        await lease_claimed(session, [message_id], [old_lease], OWNER)
        # the old lease ran out; the same replica claims the message again and marks it
        await lease_claimed(session, [message_id], [old_lease + timedelta(minutes=1)], OWNER)
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)  # the session's, in its transaction
        marked = await mark_attempting(driver, [message_id], OWNER, timedelta(seconds=30))
    assert set(marked) == {message_id}

    async with sessions() as session, session.begin():
        await give_back_unsent(session, [(message_id, old_lease)], OWNER)  # late, stale
    async with sessions() as session:
        state, attempts = (
            await session.execute(
                text("SELECT state, attempt_count FROM invite_message WHERE id = :id"),
                {"id": message_id},
            )
        ).one()
    assert (state, attempts) == ("sending", 1)  # the newer attempt stands

    async with sessions() as session, session.begin():
        await give_back_unsent(session, [(message_id, marked[message_id])], OWNER)
    async with sessions() as session:
        state, attempts = (
            await session.execute(
                text("SELECT state, attempt_count FROM invite_message WHERE id = :id"),
                {"id": message_id},
            )
        ).one()
    assert (state, attempts) == ("queued", 0)  # its own give back still works
