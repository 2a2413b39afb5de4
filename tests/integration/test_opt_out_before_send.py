"""A STOP that arrives between a message's claim and its send keeps it from being sent.

The claim checks Do-Not-Message; the worker marks a message `sending` up to a claim's lead
(about a second) later, just before its request leaves. The mark checks again, so a person who
opted out meanwhile is not sent to: the message is given back, and the next claim blocks it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import driver_autocommit
from dispatch_service.dispatcher.claims import ClaimSettings, claim
from dispatch_service.dispatcher.rate_limiter import SenderRateLimiter
from dispatch_service.domain.send_rate import RateSettings
from dispatch_service.domain.stop_keywords import InboundText
from dispatch_service.persistence.claims import active_runs
from dispatch_service.persistence.message_transitions import give_back_unsent, mark_attempting
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, apply_status
from tests.integration.dispatch_support import precheck_and_start, seed_world
from tests.integration.factories import DEFAULT_SENDER

PHONE = "+14155550103"
OWNER = "replica-a"


async def test_a_stop_after_the_claim_keeps_the_message_from_being_marked_and_sent(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [PHONE])
    run = (await precheck_and_start(sessions, world)).run
    async with sessions() as session:
        (active,) = [r for r in await active_runs(session) if r.id == run.id]
    limiter = SenderRateLimiter(RateSettings(messages_per_second=500))
    (message,) = (await claim(sessions, limiter, active, 1, ClaimSettings(OWNER, 30.0))).messages

    stop = InboundText(DEFAULT_SENDER, PHONE.lstrip("+"), "STOP", datetime.now(UTC))
    await apply_status(ApplyStatusCommand(inbound_texts=[stop]), sessions)

    async with driver_autocommit(sessions) as connection:
        marked = await mark_attempting(connection, [message.id], OWNER, timedelta(seconds=30))
    assert marked == {}  # must not be sent
    async with sessions() as session, session.begin():
        await give_back_unsent(session, [(message.id, message.lease)], OWNER)
    again = await claim(sessions, limiter, active, 1, ClaimSettings(OWNER, 30.0))
    assert (again.messages, again.blocked) == ([], 1)
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT state, rejection_reason, attempt_count FROM invite_message")
            )
        ).one()
    assert tuple(row) == ("blocked", "do_not_message", 0)
