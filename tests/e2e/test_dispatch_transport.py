"""The provider's HTTP transport (httpx over aiohttp) against real local servers: answers come
through intact, and failures keep the one distinction retries depend on: never sent (transient)
versus maybe sent (ambiguous, never re-sent)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from dispatch_service.domain.retry import RetryClass
from dispatch_service.providers import aiohttp_transport
from dispatch_service.providers.base import Accepted, Failed, NotSent, TemplateSend
from dispatch_service.providers.meta import MetaCloudProvider, build_http_client

SEND = TemplateSend(
    message_id=uuid.uuid4(),
    sender_id="100000000000001",
    to_e164="+14155550100",
    template_name="event_invitation",
    language="en_US",
    body_parameters=("Jane", "Sat 1 Jun 2030, 17:30"),
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/{version}/{sender}/messages", handler)
    return await serve_app(app)


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def provider_for() -> AsyncIterator[Callable[[str], MetaCloudProvider]]:
    clients = []

    def make(base_url: str) -> MetaCloudProvider:
        client = build_http_client(
            timeout_seconds=0.5, connect_timeout_seconds=0.5, max_connections=4
        )
        clients.append(client)
        return MetaCloudProvider(client, base_url=base_url, api_version="v26.0", access_token="t")

    yield make
    for client in clients:
        await client.aclose()


async def test_an_accepted_send_comes_through_with_the_request_intact(
    provider_for: Callable[[str], MetaCloudProvider],
) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    async def accept(request: web.Request) -> web.Response:
        seen.append((request.headers["Authorization"], await request.json()))
        return web.json_response(
            {"contacts": [{"wa_id": "14155550100"}], "messages": [{"id": "wamid.X"}]}
        )

    runner, url = await serve(accept)
    try:
        outcome = await provider_for(url).send_template(SEND)
    finally:
        await runner.cleanup()
    assert outcome == Accepted("wamid.X", "14155550100")
    [(authorization, body)] = seen
    assert authorization == "Bearer t"
    assert body["biz_opaque_callback_data"] == str(SEND.message_id)


async def test_a_compressed_answer_is_read_once_decoded_on_both_paths() -> None:
    """aiohttp decodes a gzip body: the send path reads it as is, and an httpx response built
    from it (template sync goes through httpx's client) must not be decoded a second time."""
    answer = {"contacts": [{"wa_id": "14155550100"}], "messages": [{"id": "wamid.Z"}]}

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps(answer).encode())
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_post("/{version}/{sender}/messages", gzipped)
    app.router.add_get("/{version}/{sender}/messages", gzipped)
    runner, url = await serve_app(app)
    client = build_http_client(timeout_seconds=2, connect_timeout_seconds=2, max_connections=2)
    provider = MetaCloudProvider(client, base_url=url, api_version="v26.0", access_token="t")
    try:
        assert await provider.send_template(SEND) == Accepted("wamid.Z", "14155550100")
        response = await client.get(f"{url}/v26.0/{SEND.sender_id}/messages")
        assert response.json() == answer
    finally:
        await client.aclose()
        await runner.cleanup()


async def test_a_refused_connection_was_never_sent(
    provider_for: Callable[[str], MetaCloudProvider],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        outcome = await provider_for(f"http://127.0.0.1:{port}").send_template(SEND)
    assert isinstance(outcome, Failed)
    assert outcome.retry_class is RetryClass.TRANSIENT


async def test_a_connection_dropped_after_the_request_is_ambiguous(
    provider_for: Callable[[str], MetaCloudProvider],
) -> None:
    async def drop(request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        request.transport.close()  # the provider took it, the answer never comes
        await asyncio.sleep(0.1)
        return web.Response()

    runner, url = await serve(drop)
    try:
        outcome = await provider_for(url).send_template(SEND)
    finally:
        await runner.cleanup()
    assert isinstance(outcome, Failed)
    assert outcome.retry_class is RetryClass.AMBIGUOUS


async def test_an_answer_slower_than_the_timeout_is_ambiguous(
    provider_for: Callable[[str], MetaCloudProvider],
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"messages": [{"id": "wamid.late"}]})

    runner, url = await serve(slow)
    try:
        outcome = await provider_for(url).send_template(SEND)
    finally:
        await runner.cleanup()
    assert isinstance(outcome, Failed)
    assert outcome.retry_class is RetryClass.AMBIGUOUS
    assert "Timeout" in outcome.error_title


async def test_a_request_whose_window_passes_in_the_pool_is_never_written() -> None:
    """The only connection is busy past the second request's window: that request must not
    leave when the connection frees up (it would land outside its slot), and says so."""
    arrived: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        arrived.append((await request.json())["biz_opaque_callback_data"])
        await asyncio.sleep(0.4)
        return web.json_response({"contacts": [{"wa_id": "1"}], "messages": [{"id": "wamid.S"}]})

    runner, url = await serve(slow)
    client = build_http_client(timeout_seconds=2, connect_timeout_seconds=2, max_connections=1)
    provider = MetaCloudProvider(client, base_url=url, api_version="v21.0", access_token="t")
    second = TemplateSend(**{**SEND.__dict__, "message_id": uuid.uuid4()})
    try:
        first_call = asyncio.create_task(provider.send_template(SEND))
        await asyncio.sleep(0.05)  # the first request holds the only connection now
        outcome = await provider.send_template(second, not_after=time.monotonic() + 0.1)
        assert isinstance(outcome, NotSent)
        assert isinstance(await first_call, Accepted)
        late = await provider.send_template(second, not_after=time.monotonic() - 0.01)
        assert isinstance(late, NotSent)
        in_time = await provider.send_template(second, not_after=time.monotonic() + 5)
        assert isinstance(in_time, Accepted)
    finally:
        await client.aclose()
        await runner.cleanup()
    assert arrived == [str(SEND.message_id), str(second.message_id)]


class _Ahead:
    """The transport's clock, 5 s ahead: a window that began in time (the call checks it
    first) has passed once the transport holds a connection, as after an event-loop stall."""

    @staticmethod
    def monotonic() -> float:
        return time.monotonic() + 5


async def _connections_used(
    monkeypatch: pytest.MonkeyPatch, pause: float
) -> tuple[list[object], list[object]]:
    """One accepted send, `pause` s, three sends refused for their windows with the connection
    in hand, one accepted send: the server-side connection of each accepted send, and the
    refusals' outcomes."""
    connections: list[object] = []

    async def accept(request: web.Request) -> web.Response:
        connections.append(request.transport)
        return web.json_response({"contacts": [{"wa_id": "1"}], "messages": [{"id": "wamid.P"}]})

    monkeypatch.setattr(aiohttp_transport, "time", _Ahead)
    runner, url = await serve(accept)
    client = build_http_client(timeout_seconds=2, connect_timeout_seconds=2, max_connections=1)
    provider = MetaCloudProvider(client, base_url=url, api_version="v21.0", access_token="t")
    refusals: list[object] = []
    try:
        assert isinstance(await provider.send_template(SEND), Accepted)
        await asyncio.sleep(pause)
        for _ in range(3):
            refusals.append(await provider.send_template(SEND, not_after=time.monotonic() + 1))
        assert isinstance(await provider.send_template(SEND), Accepted)
    finally:
        await client.aclose()
        await runner.cleanup()
    return connections, refusals


async def test_a_request_whose_window_passes_with_a_connection_in_hand_leaves_it_pooled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing was written on the connection: the next request reuses it instead of opening
    (with Meta: handshaking) another."""
    connections, refusals = await _connections_used(monkeypatch, pause=0)
    assert refusals == [NotSent("the send window passed before the request was written")] * 3
    assert len(connections) == 2
    assert connections[0] is connections[1]


async def test_a_refused_request_closes_a_connection_idle_longer_than_the_pool_can_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool dates a connection it gets back from then, the server from the last request it
    saw: a connection the server has not heard from lately is closed, not given back, so its
    idle time never grows past the keep-alive expiry unseen (to a server that closed it)."""
    monkeypatch.setattr(aiohttp_transport, "RECENT_CONTACT_SECONDS", 0.1)
    connections, refusals = await _connections_used(monkeypatch, pause=0.3)
    # The first held the connection and closed it; the others found none open in time.
    assert refusals[0] == NotSent("the send window passed before the request was written")
    assert all(isinstance(refusal, NotSent) for refusal in refusals)
    assert len(connections) == 2
    assert connections[0] is not connections[1]
