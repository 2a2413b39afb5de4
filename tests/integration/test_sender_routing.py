"""The send path's sender look-up (providers.routing): one query for many sends, and an expired
entry answering while one refresh runs, so a look-up never drains the connection pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.providers.base import Accepted, SendOutcome, TemplateSend
from dispatch_service.providers.routing import RoutingProvider
from tests.integration.factories import Seeder

SENDER = "whatsapp:+14155550177"
"""A sender that may become Twilio's (the workspace's provider changes under the cache)."""


class CountingSessions:
    """A session factory that counts the sessions it opened."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.opened = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        self.opened += 1
        async with self.sessions() as session:
            yield session


class Recorder:
    """A provider that accepts every send and remembers it."""

    name = "meta"

    def __init__(self) -> None:
        self.sent: list[TemplateSend] = []

    async def send_template(self, send: TemplateSend, *, not_after: float | None = None) -> Any:
        self.sent.append(send)
        return Accepted(provider_message_id=f"wamid.{len(self.sent)}", recipient_id=None)


def template_send() -> TemplateSend:
    return TemplateSend(
        message_id=uuid.uuid4(),
        sender_id=SENDER,
        to_e164="+14155550100",
        template_name="event_invitation",
        language="en_US",
        body_parameters=("Ada", "1 June"),
    )


async def move_to_twilio(sessions: async_sessionmaker[AsyncSession], workspace: uuid.UUID) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE workspace SET sender_provider = 'twilio', twilio_account_sid = :sid"
                " WHERE id = :id"
            ),
            {"id": workspace, "sid": "AC" + "0" * 32},
        )


@pytest.fixture
def workspace(database_url: str) -> uuid.UUID:
    with Seeder(database_url) as seed:
        return seed.workspace(sender=SENDER)


async def test_sends_share_one_look_up(
    sessions: async_sessionmaker[AsyncSession], workspace: uuid.UUID
) -> None:
    counting = CountingSessions(sessions)
    meta = Recorder()
    router = RoutingProvider(counting, meta, None)  # type: ignore[arg-type]

    outcomes: list[SendOutcome] = await asyncio.gather(
        *(router.send_template(template_send()) for _ in range(200))
    )

    assert all(isinstance(outcome, Accepted) for outcome in outcomes)
    assert len(meta.sent) == 200
    assert counting.opened == 1  # the engine's pool holds 10: 200 look-ups would overflow it


async def test_an_expired_entry_answers_while_one_refresh_runs(
    sessions: async_sessionmaker[AsyncSession], workspace: uuid.UUID
) -> None:
    counting = CountingSessions(sessions)
    # Expired after 1 s, past its grace after 2 s: the sleep below lands 0.1 s into the grace,
    # with 0.9 s to spare for a busy machine (a ttl of 0.2 s left 0.15 s, which a full run on
    # the 2-core machine overslept once).
    router = RoutingProvider(counting, Recorder(), None, ttl_seconds=1.0)  # type: ignore[arg-type]
    assert (await router.facts(template_send())).provider == "meta"
    await move_to_twilio(sessions, workspace)
    await asyncio.sleep(1.1)  # expired, not yet past its grace

    stale = await asyncio.gather(*(router.facts(template_send()) for _ in range(50)))

    assert {facts.provider for facts in stale} == {"meta"}  # answered at once, from the cache
    assert counting.opened == 2  # and one refresh started behind them
    for _ in range(100):
        if (await router.facts(template_send())).provider == "twilio":
            break
        await asyncio.sleep(0.01)
    assert (await router.facts(template_send())).provider == "twilio"
    assert counting.opened == 2


async def test_past_its_grace_an_entry_is_read_again_before_sending(
    sessions: async_sessionmaker[AsyncSession], workspace: uuid.UUID
) -> None:
    counting = CountingSessions(sessions)
    router = RoutingProvider(counting, Recorder(), None, ttl_seconds=0.1)  # type: ignore[arg-type]
    await router.facts(template_send())
    await move_to_twilio(sessions, workspace)
    await asyncio.sleep(0.25)  # past fresh (0.1 s) and grace (0.1 s more)

    facts = await asyncio.gather(*(router.facts(template_send()) for _ in range(20)))

    assert {f.provider for f in facts} == {"twilio"}
    assert counting.opened == 2


async def test_a_failed_look_up_fails_every_send_waiting_on_it_and_is_tried_again(
    sessions: async_sessionmaker[AsyncSession], workspace: uuid.UUID
) -> None:
    class Failing(CountingSessions):
        @asynccontextmanager
        async def __call__(self) -> AsyncIterator[AsyncSession]:
            self.opened += 1
            if self.opened == 1:
                raise ConnectionError("database away")
            async with self.sessions() as session:
                yield session

    failing = Failing(sessions)
    meta = Recorder()
    router = RoutingProvider(failing, meta, None)  # type: ignore[arg-type]

    first = await asyncio.gather(*(router.send_template(template_send()) for _ in range(10)))
    again = await router.send_template(template_send())

    assert {type(o).__name__ for o in first} == {"Failed"}
    assert not meta.sent[:-1]
    assert isinstance(again, Accepted)
    assert failing.opened == 2
