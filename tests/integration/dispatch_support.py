"""Shared pieces of the send-path tests: a seeded event ready to precheck, a recording fake of
Meta's send endpoint for httpx.MockTransport, and a dispatcher configured for tests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.dispatcher.results import RetryPolicy
from dispatch_service.dispatcher.worker import Dispatcher, DispatcherConfig
from dispatch_service.domain.retry import Backoff
from dispatch_service.domain.send_rate import RateSettings
from dispatch_service.providers.meta import MetaCloudProvider, build_http_client
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from dispatch_service.use_cases.runs import StartRunResult, start_run, start_run_command
from tests.integration.factories import DEFAULT_SENDER, Seeder


@dataclass(frozen=True)
class World:
    """One workspace with an event, a template, members of every role and households."""

    workspace_id: uuid.UUID
    parent_admin: uuid.UUID
    admin: uuid.UUID
    viewer: uuid.UUID
    event_id: uuid.UUID
    template_id: uuid.UUID


def seed_world(
    database_url: str,
    phones: Sequence[str | None],
    *,
    variables: tuple[str, ...] = ("guest_name", "event_date"),
    template_status: str = "APPROVED",
    sender: str = DEFAULT_SENDER,
) -> World:
    """A workspace whose event targets one household per phone (audience: all)."""
    with Seeder(database_url) as seed:
        ws = seed.workspace(sender=sender)
        world = World(
            workspace_id=ws,
            parent_admin=seed.member(ws, "parent_admin"),
            admin=seed.member(ws, "admin"),
            viewer=seed.member(ws, "viewer"),
            event_id=seed.event(ws),
            template_id=seed.template(ws, variables=variables, status=template_status),
        )
        seed.households(ws, phones)
        seed.audience_all(world.event_id, ws)
    return world


def runs_paused() -> float:
    """invites_template_runs_paused_total so far (this process's registry)."""
    return REGISTRY.get_sample_value("invites_template_runs_paused_total") or 0.0


async def precheck_and_start(
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    key: str = "key-1",
    resend: tuple[str, ...] = (),
) -> StartRunResult:
    """PrecheckSend then StartRun as the parent admin."""
    command = precheck_command(
        world.parent_admin, str(world.event_id), str(world.template_id), 0, list(resend)
    )
    precheck = await precheck_send(sessions, command, ttl_seconds=3600)
    start = start_run_command(world.parent_admin, str(precheck.precheck_id), key)
    return await start_run(sessions, start)


Script = Callable[[dict[str, Any], int], httpx.Response | Exception]
"""Decides the answer to one send: (request body, how many sends this recipient got before)."""


def accept(body: dict[str, Any], _: int) -> httpx.Response:
    """Meta's success answer."""
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": f"wamid.{uuid.uuid4().hex}", "message_status": "accepted"}],
        },
    )


def graph_error(code: int, status: int = 400, title: str = "Error") -> httpx.Response:
    """A Graph API error answer."""
    return httpx.Response(
        status,
        json={
            "error": {
                "message": f"(#{code}) {title}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": f"details {code}"},
            }
        },
    )


@dataclass
class FakeMeta:
    """Meta's send endpoint as a MockTransport handler that records every request."""

    script: Script = accept
    latency: float = 0.0
    sends: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    per_recipient: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        before = self.per_recipient[body["to"]]
        self.per_recipient[body["to"]] += 1
        self.sends.append((time.monotonic(), body))
        if self.latency:
            await asyncio.sleep(self.latency)
        answer = self.script(body, before)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sends_to(self, phone: str) -> int:
        """How many requests went to `phone` (E.164)."""
        return self.per_recipient[phone.lstrip("+")]

    def provider(self) -> MetaCloudProvider:
        """A Meta provider whose HTTP client talks to this fake."""
        client = build_http_client(
            timeout_seconds=2.0,
            connect_timeout_seconds=1.0,
            max_connections=100,
            transport=httpx.MockTransport(self.handle),
        )
        return MetaCloudProvider(
            client, base_url="https://graph.test", api_version="v26.0", access_token="t"
        )


def test_config(**overrides: Any) -> DispatcherConfig:
    """Fast loops, a generous rate, short windows."""
    values: dict[str, Any] = {
        "rate": RateSettings(messages_per_second=500, headroom=0.1, horizon_seconds=0.1),
        "retry": RetryPolicy(max_attempts=3, backoff=Backoff(0.05, 0.1)),
        "concurrency": 50,
        "claim_batch_size": 50,
        "poll_seconds": 0.05,
        "flush_seconds": 0.01,
        "reconcile_seconds": 0.1,
        "lease_seconds": 5.0,
        "outcome_unknown_seconds": 60.0,
    }
    return DispatcherConfig(**(values | overrides))


class RunningDispatcher:
    """A dispatcher running as a task for the length of an `async with`."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Dispatcher:
        self.task = asyncio.create_task(self.dispatcher.run())
        return self.dispatcher

    async def __aexit__(self, *_: object) -> None:
        self.dispatcher.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


def running(
    sessions: async_sessionmaker[AsyncSession], fake: FakeMeta, **config: Any
) -> RunningDispatcher:
    """`async with running(sessions, fake) as dispatcher:` a dispatcher sending to `fake`."""
    return RunningDispatcher(Dispatcher(sessions, fake.provider(), test_config(**config)))


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Await until `predicate()` (sync or async) is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
