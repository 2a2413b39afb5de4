"""A give back or a send's result written late never undoes a newer claim of the same message.

After a database outage a replica may write the give back of a claim whose lease ran out while,
meanwhile, the same message was claimed again, marked `sending` and sent. The give back names
the lease it was made under, so it is a no-op then (else the message would go back to `queued`
and be sent a second time). A batch of results is written again when its COMMIT's answer was
lost (the worker cannot know it was committed): each result names its lease too.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import driver_autocommit
from dispatch_service.dispatcher.claims import ClaimedMessage, ClaimSettings, claim
from dispatch_service.dispatcher.rate_limiter import SenderRateLimiter
from dispatch_service.dispatcher.results import Result, RetryPolicy, write_results
from dispatch_service.domain.retry import Backoff, RetryClass
from dispatch_service.domain.send_rate import RateSettings
from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.claims import active_runs
from dispatch_service.persistence.message_transitions import (
    give_back_unsent,
    lease_claimed,
    mark_attempting,
)
from dispatch_service.providers.base import Failed
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


CALL_LEASE = timedelta(seconds=30)


async def _claim_and_mark(
    sessions: async_sessionmaker[AsyncSession], run_id: object, owner: str
) -> ClaimedMessage:
    """`owner` claims the run's one message and marks it `sending` (its request may leave)."""
    async with sessions() as session:
        (active,) = [r for r in await active_runs(session) if r.id == run_id]
    limiter = SenderRateLimiter(RateSettings(messages_per_second=500))
    (message,) = (await claim(sessions, limiter, active, 1, ClaimSettings(owner, 30.0))).messages
    async with driver_autocommit(sessions) as connection:
        marked = await mark_attempting(connection, [message.id], owner, CALL_LEASE)
    return replace(message, lease=marked[message.id])


async def _row(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str | None, int]:
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT state, lease_owner, attempt_count FROM invite_message")
            )
        ).one()
    return row.state, row.lease_owner, row.attempt_count


@pytest.mark.parametrize("retry_class", [c for c in RetryClass if c is not RetryClass.ACCEPTED])
@pytest.mark.parametrize("newer", ["replica-b", "replica-a"])  # another replica, or the same
async def test_a_result_written_again_leaves_a_newer_attempt_alone(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    retry_class: RetryClass,
    newer: str,
) -> None:
    world = seed_world(database_url, ["+14155550102"])
    run = (await precheck_and_start(sessions, world)).run
    policy = RetryPolicy(max_attempts=5, backoff=Backoff(0.0, 0.0))
    # Replica A's call fails transiently; its result batch commits but the answer is lost.
    first = await _claim_and_mark(sessions, run.id, "replica-a")
    failed = Failed(RetryClass.TRANSIENT, 131000, "Something went wrong", "")
    async with sessions() as session, session.begin():
        await write_results(session, [Result(first, failed)], policy, "replica-a", random.Random(1))
    assert await _row(sessions) == ("queued", None, 1)
    # A replica claims the message again and marks it: its request is on the wire. (The same
    # replica holds it under another lease: the lease, not the owner, tells the two apart.)
    await _claim_and_mark(sessions, run.id, newer)
    assert await _row(sessions) == ("sending", newer, 2)

    # A writes its batch again, with any outcome: the newer attempt stands (nothing re-queued,
    # failed or ended, so no third request and no state its answer cannot follow), and its run
    # is not paused by a halt that was recorded the first time.
    again = Failed(retry_class, 131000, "Something went wrong", "")
    async with sessions() as session, session.begin():
        effects = await write_results(
            session, [Result(first, again)], policy, "replica-a", random.Random(1)
        )
    assert await _row(sessions) == ("sending", newer, 2)
    assert effects.paused_runs == set()
