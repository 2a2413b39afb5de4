"""Signed callbacks: every change reaches a receiver that was down for a while, in order; a
receiver following the documented rule rejects forged and replayed callbacks; a receiver that
stays down past the dead-letter time has its changes dead-lettered and delivery goes on.

The receiver is the outside world, so it is an httpx.MockTransport handler; it checks each
request with the reference rule (domain/callbacks.verify_signature), as docs/changes.md shows.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from grpc import aio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import make_engine
from common.generated.invites.v1 import admin_pb2 as admin_pb
from common.generated.invites.v1 import dispatch_pb2 as pb
from dispatch_service.domain.callbacks import SIGNATURE_HEADER, verify_signature
from dispatch_service.use_cases.callbacks import CallbackConfig, run_deliverer
from tests.integration.conftest import ApiClient, code_of
from tests.integration.dispatch_support import World, seed_world, wait_for
from tests.integration.test_runs_api import precheck, start

SECRET = "s3cret-for-tests-0123456789abcdef"
URL = "http://receiver.test/invites"
PHONES = [f"+1415555{n:04d}" for n in range(8)]


@dataclass
class Receiver:
    """A backend's callback endpoint following the documented rule."""

    secret: str = SECRET
    down: bool = True
    refused: int = 0
    requests: list[tuple[bytes, str]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def accept(self, body: bytes, header: str, now: float) -> int:
        """The reference receiver: 401 unless signed and fresh; a replay (cursors already
        processed) is acknowledged and dropped."""
        if not verify_signature(self.secret, header, body, now):
            return 401
        seen = int(self.changes[-1]["cursor"]) if self.changes else 0
        self.changes += [c for c in json.loads(body)["changes"] if int(c["cursor"]) > seen]
        return 200

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            return httpx.Response(503)
        header = request.headers[SIGNATURE_HEADER]
        self.requests.append((request.content, header))
        return httpx.Response(self.accept(request.content, header, time.time()))


async def configure(api: ApiClient, world: World) -> None:
    request = admin_pb.SetCallbackEndpointRequest(url=URL, secret=SECRET)
    for actor, bad, expected in (
        (world.admin, request, grpc.StatusCode.PERMISSION_DENIED),
        (
            world.parent_admin,
            admin_pb.SetCallbackEndpointRequest(url="ftp://x", secret="short"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await api.admin.SetCallbackEndpoint(bad, metadata=api.md(str(actor)))
        assert code_of(caught.value) == expected
    reply = await api.admin.SetCallbackEndpoint(request, metadata=api.md(str(world.parent_admin)))
    assert reply.endpoint.url == URL


async def all_changes(api: ApiClient, world: World) -> list[pb.Change]:
    reply = await api.dispatch.ListChanges(
        pb.ListChangesRequest(), metadata=api.md(str(world.viewer))
    )
    return list(reply.changes)


def log_outcomes(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT outcome FROM callback_attempt ORDER BY id")]


async def test_control_characters_are_refused_and_database_errors_never_log_parameters(
    grpc_api: ApiClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A NUL in the URL passed the check and failed in psycopg: INTERNAL, and the guard logged
    # the error's text, which carried the statement's parameters, the signing secret among them.
    world = seed_world(database_url, ["+14155550101"])
    actor = str(world.parent_admin)
    for url, secret in (("https://example.com/\x00", SECRET), (URL, SECRET[:-1] + "\x00")):
        with pytest.raises(aio.AioRpcError) as caught:
            await grpc_api.admin.SetCallbackEndpoint(
                admin_pb.SetCallbackEndpointRequest(url=url, secret=secret),
                metadata=grpc_api.md(actor),
            )
        assert code_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    # Whatever fails in the database, its error's text names no parameter.
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failed:
                await connection.execute(
                    text("SELECT CAST(:secret AS text) WHERE 1 / 0 = 1"),
                    {"secret": "callback-secret-never-logged"},
                )
    finally:
        await engine.dispose()
    assert "callback-secret-never-logged" not in str(failed.value)
    assert "never-logged" not in caplog.text


async def test_a_receiver_down_for_a_while_gets_every_change_in_order(
    database_url: str, grpc_api: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    await configure(grpc_api, world)
    run = await start(grpc_api, world, await precheck(grpc_api, world))
    await grpc_api.dispatch.CancelRun(
        pb.CancelRunRequest(run_id=run.run_id), metadata=grpc_api.md(str(world.parent_admin))
    )
    receiver = Receiver()
    config = CallbackConfig(poll_seconds=0.05, max_backoff_seconds=0.2, batch_size=5)
    stop = asyncio.Event()
    deliverer = asyncio.create_task(
        run_deliverer(sessions, config, httpx.MockTransport(receiver.handle), stop)
    )
    try:
        await wait_for(lambda: receiver.refused >= 3, what="retries while the receiver is down")
        receiver.down = False
        expected = await all_changes(grpc_api, world)
        assert len(expected) == 2 + 2 * len(PHONES)  # run and messages created, then cancelled
        await wait_for(
            lambda: len(receiver.changes) >= len(expected), what="every change delivered"
        )
    finally:
        stop.set()
        await asyncio.wait_for(deliverer, 10)
    assert [c["cursor"] for c in receiver.changes] == [c.cursor for c in expected]
    assert [(c["message_id"] or None, c["to"]) for c in receiver.changes][:1] == [(None, "queued")]
    outcomes = log_outcomes(database_url)
    assert outcomes[:3] == ["failed"] * 3
    assert outcomes.count("delivered") == len(receiver.requests)
    state = await grpc_api.admin.GetCallbackEndpoint(
        admin_pb.GetCallbackEndpointRequest(), metadata=grpc_api.md(str(world.viewer))
    )
    assert state.endpoint.cursor == expected[-1].cursor
    assert (state.endpoint.last_status, state.endpoint.attempts) == ("200", 0)
    assert state.endpoint.delivered_count == len(expected)

    # The documented rule: forged, tampered and replayed callbacks are rejected.
    body, header = receiver.requests[0]
    now = time.time()
    assert verify_signature(SECRET, header, body, now)
    assert not verify_signature("an-attacker-guessing-the-secret", header, body, now)
    assert not verify_signature(SECRET, header, body.replace(b"queued", b"sent__"), now)
    assert not verify_signature(SECRET, header, body, now + 301)  # outside the window
    assert not verify_signature(SECRET, "t=1,v1=00", body, now)
    before = list(receiver.changes)
    assert receiver.accept(body, header, now) == 200  # a replay inside the window...
    assert receiver.changes == before  # ...changes nothing (its cursors were processed)


async def test_changes_are_dead_lettered_when_the_receiver_stays_down(
    database_url: str, grpc_api: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:2])
    await configure(grpc_api, world)
    await start(grpc_api, world, await precheck(grpc_api, world))
    receiver = Receiver()
    config = CallbackConfig(
        poll_seconds=0.05, max_backoff_seconds=0.1, dead_letter_seconds=0.5, batch_size=100
    )
    stop = asyncio.Event()
    deliverer = asyncio.create_task(
        run_deliverer(sessions, config, httpx.MockTransport(receiver.handle), stop)
    )
    try:
        await wait_for(lambda: "dead_lettered" in log_outcomes(database_url), what="a dead letter")
    finally:
        stop.set()
        await asyncio.wait_for(deliverer, 10)
    state = await grpc_api.admin.GetCallbackEndpoint(
        admin_pb.GetCallbackEndpointRequest(), metadata=grpc_api.md(str(world.viewer))
    )
    expected = await all_changes(grpc_api, world)
    assert state.endpoint.dead_lettered_count == len(expected) == 3
    assert state.endpoint.cursor == expected[-1].cursor  # delivery goes on after them
    assert receiver.changes == []
