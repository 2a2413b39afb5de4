"""The ingestor on real Postgres with a real in-process dispatch service (gRPC on a free port).

POSTs go through aiohttp's test client to the real app; nothing about the status path is faked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import receipts as receipts_sql
from common.db.engine import make_engine, make_sessions
from common.generated.invites.v1 import dispatch_pb2, dispatch_pb2_grpc
from dispatch_service.bootstrap import Deps as DispatchDeps
from dispatch_service.grpc_api import dispatch_servicer
from dispatch_service.persistence import status as status_sql
from dispatch_service.server import build_server
from dispatch_service.settings import DispatchSettings
from dispatch_service.use_cases.apply_status import apply_status as apply_status_use_case
from tests.integration.dispatch_support import precheck_and_start, seed_world
from tests.status_support import (
    SENDER,
    SeededRun,
    change,
    encode,
    envelope,
    meta_error,
    seed_run,
    seed_workspace,
    sign,
    status_item,
    statuses_body,
)
from webhook_service import forwarder as forwarder_module
from webhook_service.app import CHANNEL_OPTIONS, FORWARDER, create_app
from webhook_service.app import Deps as WebhookDeps
from webhook_service.forwarder import Forwarder, plan
from webhook_service.inbox import Receipt, ReceiptWriter
from webhook_service.settings import WebhookSettings

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
INGESTOR_TOKEN = "test-ingestor-token"
SECRET, NEXT_SECRET = "test-app-secret", "test-next-app-secret"
PATH = "/webhooks/whatsapp"
MAX_BODY = 64 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DispatchServer:
    """The real dispatch gRPC server, stoppable and restartable on the same port."""

    def __init__(self, database_url: str) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        self.settings = DispatchSettings(
            database_url=database_url,
            dispatch_listen=self.target,
            dispatch_metrics_listen="",
            dispatch_backend_tokens="test-backend-token",
            dispatch_ingestor_token=INGESTOR_TOKEN,
            whatsapp_access_token="test-access-token",
            whatsapp_phone_number_id=SENDER,
        )
        self.engine = make_engine(database_url, pool_size=4, max_overflow=4)
        self.server: aio.Server | None = None

    async def start(self) -> None:
        deps = DispatchDeps(self.settings, self.engine, make_sessions(self.engine))
        self.server, _, _ = build_server(self.settings, deps)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


def webhook_settings(database_url: str, target: str, **overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "dispatch_target": target,
        "dispatch_ingestor_token": INGESTOR_TOKEN,
        "whatsapp_app_secret": f"{SECRET},{NEXT_SECRET}",
        "whatsapp_verify_token": "test-verify-token",
        "webhook_max_body_bytes": MAX_BODY,
        "webhook_forward_deadline_seconds": 2.0,
        "webhook_forward_backoff_seconds": 0.05,
        "webhook_sweep_interval_seconds": 0.2,
        "webhook_sweep_min_age_seconds": 0.3,
        **overrides,
    }
    return WebhookSettings(**values)


@pytest.fixture
async def dispatch(database_url: str) -> AsyncIterator[DispatchServer]:
    server = DispatchServer(database_url)
    await server.start()
    yield server
    await server.stop()
    await server.engine.dispose()


@pytest.fixture
async def client(
    database_url: str, dispatch: DispatchServer
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = webhook_settings(database_url, dispatch.target)
    deps = WebhookDeps(
        make_engine(database_url, pool_size=4), aio.insecure_channel(dispatch.target)
    )
    async with TestClient(TestServer(create_app(settings, deps))) as test_client:
        yield test_client


Post = Callable[..., Awaitable[ClientResponse]]


@pytest.fixture
def post(client: TestClient[Any, Any]) -> Post:
    async def send(body: bytes, signature: str | None = "sign", **kwargs: Any) -> ClientResponse:
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            signature = sign(body, SECRET)
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return await client.post(PATH, data=body, headers=headers, **kwargs)

    return send


def query(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, list(params)).fetchall()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.05)


def receipts(database_url: str) -> list[tuple[Any, ...]]:
    return query(database_url, "SELECT state, flag FROM webhook_receipt ORDER BY received_at")


def states(database_url: str, run: SeededRun) -> list[str]:
    rows = query(
        database_url,
        "SELECT state FROM invite_message WHERE run_id = %s ORDER BY position",
        run.run_id,
    )
    return [r[0] for r in rows]


async def test_a_signed_status_is_stored_as_received_answered_and_applied(
    database_url: str, post: Post
) -> None:
    run = seed_run(database_url, 1)
    body = statuses_body([status_item(run.wamids[0] or "", "delivered", 1_900_000_000)])
    response = await post(body)
    assert response.status == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)])
    (stored,) = query(
        database_url,
        "SELECT body, body_sha256, headers, signature_verdict, phone_number_id, workspace_id,"
        " attempts, applied_at IS NOT NULL FROM webhook_receipt",
    )
    assert stored[0] == body
    assert stored[1] == hashlib.sha256(body).digest()
    assert stored[2]["x-hub-signature-256"] == sign(body, SECRET)
    assert stored[2]["content-type"] == "application/json"
    assert stored[3:] == ("valid", SENDER, run.workspace_id, 1, True)
    assert states(database_url, run) == ["delivered"]


async def test_forged_tampered_and_unsigned_posts_store_nothing(
    database_url: str, post: Post
) -> None:
    run = seed_run(database_url, 1)
    body = statuses_body([status_item(run.wamids[0] or "", "read", 1_900_000_000)])
    good = sign(body, SECRET)
    cases = [
        (None, 401),
        ("", 401),
        (good[len("sha256=") :], 401),  # no prefix
        (good[:-2], 401),  # wrong length
        (sign(body, "some-other-secret"), 403),
        (sign(body + b" ", SECRET), 403),  # valid signature of another body
    ]
    for signature, expected in cases:
        response = await post(body, signature=signature)
        assert response.status == expected, signature
    tampered = body.replace(b'"read"', b'"sent"')
    assert (await post(tampered, signature=good)).status == 403
    assert (await post(b"", signature=sign(b"", SECRET))).status == 400
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(0,)]
    assert states(database_url, run) == ["sent"]


async def test_upper_case_hex_and_either_rotation_secret_are_accepted(
    database_url: str, post: Post
) -> None:
    first = statuses_body([status_item("wamid.rot1", "sent", 1_900_000_000)])
    second = statuses_body([status_item("wamid.rot2", "sent", 1_900_000_000)])
    upper = "sha256=" + sign(first, SECRET)[len("sha256=") :].upper()
    assert (await post(first, signature=upper)).status == 200
    assert (await post(second, signature=sign(second, NEXT_SECRET))).status == 200
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(2,)]


async def test_bodies_over_the_limit_get_413_and_are_never_stored(
    database_url: str, client: TestClient[Any, Any], post: Post
) -> None:
    big = encode(envelope([change({"statuses": []})])) + b" " * MAX_BODY
    assert (await post(big)).status == 413

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check first
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    headers = {"X-Hub-Signature-256": sign(b"x", SECRET)}
    response = await client.post(PATH, data=chunks(), headers=headers)
    assert response.status == 413
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(0,)]


async def test_an_identical_redelivery_is_the_same_receipt(database_url: str, post: Post) -> None:
    body = statuses_body([status_item("wamid.dup", "sent", 1_900_000_000)])
    assert [(await post(body)).status for _ in range(3)] == [200, 200, 200]
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(1,)]


@pytest.mark.parametrize(
    ("body", "flag"),
    [
        (b"{not json", "invalid_json"),
        ((CORPUS / "truncated.json").read_bytes(), "invalid_json"),
        ((CORPUS / "not_whatsapp_object.json").read_bytes(), "unknown_shape"),
        ((CORPUS / "unsubscribed_field_only.json").read_bytes(), "unknown_shape"),
    ],
)
async def test_unreadable_verified_bodies_are_stored_flagged_and_acknowledged(
    database_url: str, post: Post, body: bytes, flag: str
) -> None:
    assert (await post(body)).status == 200
    await eventually(lambda: receipts(database_url) == [("flagged", flag)])
    assert query(database_url, "SELECT body FROM webhook_receipt") == [(body,)]


async def test_an_unknown_sender_is_flagged_and_never_applied(
    database_url: str, post: Post
) -> None:
    run = seed_run(database_url, 1)
    body = statuses_body([status_item(run.wamids[0] or "", "read", 1_900_000_000)], sender="999")
    assert (await post(body)).status == 200
    await eventually(lambda: receipts(database_url) == [("flagged", "unknown_sender")])
    assert states(database_url, run) == ["sent"]
    assert query(database_url, "SELECT count(*) FROM status_event") == [(0,)]


async def test_a_sender_shared_by_two_workspaces_binds_no_single_workspace(
    database_url: str, post: Post
) -> None:
    run = seed_run(database_url, 1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_workspace(conn)
    body = statuses_body([status_item(run.wamids[0] or "", "read", 1_900_000_000)])
    assert (await post(body)).status == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)])
    assert query(database_url, "SELECT phone_number_id, workspace_id FROM webhook_receipt") == [
        (SENDER, None)
    ]
    assert states(database_url, run) == ["read"]


@pytest.mark.parametrize(
    "name",
    [
        "value_level_error.json",
        "calls_connect.json",
        "smb_message_echoes.json",
        "account_update_only.json",
    ],
)
async def test_known_changes_without_updates_are_applied_and_flagged_ignored(
    database_url: str, post: Post, name: str
) -> None:
    seed_run(database_url, 1)
    assert (await post((CORPUS / name).read_bytes())).status == 200
    await eventually(lambda: receipts(database_url) == [("applied", "ignored")])
    ((notes,),) = query(database_url, "SELECT notes FROM webhook_receipt")
    assert [n["kind"] for n in notes] == ["ignored"]


async def test_one_unreadable_item_never_costs_the_others(database_url: str, post: Post) -> None:
    run = seed_run(database_url, 2)
    wamid = run.wamids[0] or ""
    body = statuses_body(
        [
            status_item(wamid, "read", 1_900_000_000),
            {"status": "delivered", "timestamp": "1900000001"},  # no id: unreadable
            status_item(run.wamids[1] or "", "sent", 1_900_000_002) | {"timestamp": "soon"},
        ]
    )
    assert (await post(body)).status == 200
    await eventually(lambda: receipts(database_url) == [("applied", "unreadable_items")])
    assert states(database_url, run) == ["read", "sent"]
    ((notes,),) = query(database_url, "SELECT notes FROM webhook_receipt")
    assert [(n["path"], n["kind"]) for n in notes] == [
        ("entry[0].changes[0].value.statuses[1]", "unreadable"),
        ("entry[0].changes[0].value.statuses[2]", "unreadable"),
    ]
    # After a fix an operator forwards it again: the applied read is a duplicate, nothing breaks.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE webhook_receipt SET state = 'pending', flag = NULL")
    await eventually(lambda: receipts(database_url) == [("applied", "unreadable_items")], 30)
    assert states(database_url, run) == ["read", "sent"]
    assert query(database_url, "SELECT count(*) FROM status_event") == [(1,)]


async def test_a_user_id_only_inbound_stop_beside_a_read_still_applies_the_read(
    database_url: str, post: Post
) -> None:
    run = seed_run(database_url, 1)
    value = json.loads((CORPUS / "inbound_text_user_id_only_stop.json").read_bytes())
    stop_change = value["entry"][0]["changes"][0]
    read_change = json.loads(
        statuses_body([status_item(run.wamids[0] or "", "read", 1_900_000_000)])
    )["entry"][0]["changes"][0]
    value["entry"][0]["changes"] = [stop_change, read_change]
    assert (await post(json.dumps(value).encode())).status == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)])
    assert states(database_url, run) == ["read"]


async def test_opt_outs_from_webhooks_reach_do_not_message(database_url: str, post: Post) -> None:
    seed_run(database_url, 1)
    for name in ("user_preferences_stop.json", "unicode_escaped_inbound.json"):
        assert (await post((CORPUS / name).read_bytes())).status == 200
    await eventually(lambda: [s for s, _ in receipts(database_url)] == ["applied", "applied"])
    assert query(
        database_url, "SELECT phone_e164, source FROM do_not_message_entry ORDER BY phone_e164"
    ) == [("+16505551234", "user_preferences_stop"), ("+46700000001", "inbound_stop_keyword")]


async def test_nothing_is_lost_while_the_dispatch_service_is_down(
    database_url: str, dispatch: DispatchServer, post: Post
) -> None:
    run = seed_run(database_url, 6)
    await dispatch.stop()
    for n, wamid in enumerate(run.wamids):
        body = statuses_body([status_item(wamid or "", "read", 1_900_000_000 + n)])
        assert (await post(body)).status == 200
    await asyncio.sleep(0.8)  # the forwarder and the sweeper both try, and fail
    assert {s for s, _ in receipts(database_url)} == {"pending"}
    (attempted,) = query(database_url, "SELECT min(attempts), max(last_error) FROM webhook_receipt")
    assert attempted[0] >= 1
    assert "UNAVAILABLE" in attempted[1]
    await dispatch.start()
    await eventually(lambda: {s for s, _ in receipts(database_url)} == {"applied"})
    assert states(database_url, run) == ["read"] * 6


async def test_text_postgres_or_protobuf_would_refuse_never_holds_a_backlog_back(
    database_url: str, dispatch: DispatchServer, post: Post
) -> None:
    # JSON's escapes allow NUL and lone surrogates: an inbound text may carry half an emoji, an
    # error's details a NUL. Postgres refuses NUL in text and jsonb, protobuf refuses lone
    # surrogates: such a receipt failed every forward, and the sweeper, which takes the
    # oldest first, retried the same batch for ever (nothing after it was applied either).
    run = seed_run(database_url, 2)
    await dispatch.stop()  # a backlog: everything goes through the sweeper
    half_emoji = {
        "from": "16505551234",
        "id": "wamid.HALF-EMOJI",
        "timestamp": "1900000000",
        "type": "text",
        "text": {"body": "See you there \ud83d"},
    }
    broken = meta_error(131026) | {"error_data": {"details": "bad\x00byte"}}
    bodies = [
        encode(envelope([change({"messages": [half_emoji]})])),
        statuses_body([status_item(run.wamids[0] or "", "failed", 1_900_000_001, errors=[broken])]),
        statuses_body([status_item(run.wamids[1] or "", "read", 1_900_000_002)]),
    ]
    assert b"\\ud83d" in bodies[0]  # escaped, as Meta sends non-ASCII
    assert b"\\u0000" in bodies[1]
    for body in bodies:
        assert (await post(body)).status == 200
    await dispatch.start()
    await eventually(lambda: receipts(database_url) == [("applied", None)] * 3)
    assert states(database_url, run) == ["failed", "read"]
    assert query(
        database_url, "SELECT error_details FROM invite_message WHERE id = %s", run.message_ids[0]
    ) == [("bad\ufffdbyte",)]


async def test_a_receipt_the_dispatch_service_refuses_never_holds_back_its_batch(
    database_url: str,
    dispatch: DispatchServer,
    client: TestClient[Any, Any],
    post: Post,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever makes the service fail one receipt's updates (a fault injected here, in our own
    # service), the sweeper used to send the same batch again at every sweep: the receipts
    # stored beside it were never applied.
    run = seed_run(database_url, 3)
    poison = run.wamids[0] or ""
    real = apply_status_use_case

    async def refusing(command: Any, *args: Any) -> Any:
        if any(s.provider_message_id == poison for s in command.statuses):
            raise RuntimeError("this update cannot be applied")
        return await real(command, *args)

    monkeypatch.setattr(dispatch_servicer, "apply_status", refusing)
    await dispatch.stop()  # a backlog: the sweeper forwards the three in one request
    for n, wamid in enumerate(run.wamids):
        body = statuses_body([status_item(wamid or "", "read", 1_900_000_000 + n)])
        assert (await post(body)).status == 200
    await dispatch.start()
    # (The sweeper settles its receipts once the call answered: after the statuses.)
    await eventually(
        lambda: [s for s, _ in receipts(database_url)] == ["pending", *["applied"] * 2]
    )
    assert states(database_url, run) == ["sent", "read", "read"]
    assert query(
        database_url,
        "SELECT attempts >= 1, last_error FROM webhook_receipt WHERE state = 'pending'",
    ) == [(True, "ApplyStatus: INTERNAL")]
    # The refused receipt keeps failing at each sweep, but says nothing of the service: the
    # ingestor is not degraded by it, and a new status takes the fresh path at once.
    forwarder = client.app[FORWARDER]
    await asyncio.sleep(0.5)  # a few more sweeps: the refused receipt again each time
    assert not forwarder._degraded
    body = statuses_body([status_item(run.wamids[2] or "", "delivered", 1_900_000_100)])
    assert (await post(body)).status == 200
    await eventually(lambda: [s for s, _ in receipts(database_url)][-1] == "applied")
    assert not forwarder._degraded


async def test_sweepers_of_several_ingestors_share_pending_receipts(
    database_url: str, dispatch: DispatchServer, client: TestClient[Any, Any]
) -> None:
    run = seed_run(database_url, 40)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n, wamid in enumerate(run.wamids):
            body = statuses_body([status_item(wamid or "", "delivered", 1_900_000_000 + n)])
            conn.execute(
                "INSERT INTO webhook_receipt (body, body_sha256, signature_verdict, state,"
                " received_at) VALUES (%s, %s, 'valid', 'pending', now() - interval '1 hour')",
                [body, hashlib.sha256(body).digest()],
            )
    # The app's own forwarder is one ingestor; two more run their sweeps at the same time.
    settings = webhook_settings(database_url, dispatch.target, webhook_forward_batch_receipts=7)
    engine = make_engine(database_url, pool_size=4)
    channel = aio.insecure_channel(dispatch.target, options=CHANNEL_OPTIONS)
    others = [Forwarder(settings, engine, channel) for _ in range(2)]
    try:

        async def drain(forwarder: Forwarder) -> int:
            total = 0
            while swept := await forwarder.sweep_once():
                total += swept
            return total

        counts = await asyncio.gather(*(drain(f) for f in others))
    finally:
        await channel.close(None)
        await engine.dispose()
    await eventually(lambda: {s for s, _ in receipts(database_url)} == {"applied"})
    assert sum(counts) <= 40
    assert query(database_url, "SELECT max(attempts) FROM webhook_receipt") == [(1,)]
    assert states(database_url, run) == ["delivered"] * 40


async def test_a_receipt_handed_over_while_degraded_is_swept_within_seconds_of_recovery(
    database_url: str, dispatch: DispatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ApplyStatus had been failing for longer than the catch-up window. The sweeper claimed
    what was pending and its call succeeded, but meanwhile another receipt was stored and
    handed over (not forwarded: the ingestor was still degraded). Catching up must outlast the
    recovery: that receipt, younger than a second at the next sweep, otherwise waited
    WEBHOOK_SWEEP_MIN_AGE_SECONDS (seen as "webhooks unsettled" in the Postgres-restart test)."""
    run = seed_run(database_url, 2)
    early, late = (
        statuses_body([status_item(wamid or "", "delivered", 1_900_000_000)])
        for wamid in run.wamids
    )
    stored_receipt(database_url, early)
    settings = webhook_settings(database_url, dispatch.target, webhook_sweep_min_age_seconds=60.0)
    engine = make_engine(database_url, pool_size=4)
    channel = aio.insecure_channel(dispatch.target, options=CHANNEL_OPTIONS)
    forwarder = Forwarder(settings, engine, channel)
    plan_claimed = forwarder._plan

    async def store_late_meanwhile(db: Any, claimed: list[Receipt]) -> Any:
        late_id = stored_receipt(database_url, late)  # after the sweep's claim
        forwarder.submit(Receipt(late_id, late, datetime.now(UTC)))  # degraded: left to sweeps
        return await plan_claimed(db, claimed)

    try:
        forwarder._degraded = True  # ApplyStatus failed ...
        forwarder._catch_up_until = time.monotonic() - 10  # ... longer ago than the window
        monkeypatch.setattr(forwarder, "_plan", store_late_meanwhile)
        assert await forwarder.sweep_once() == 1  # the degraded sweep: `early`, and it succeeds
        monkeypatch.undo()
        assert not forwarder._degraded
        deadline = time.monotonic() + 4.0  # the sweeper's loop, every 0.2 s
        while time.monotonic() < deadline and sorted(receipts(database_url)) != [
            ("applied", None),
            ("applied", None),
        ]:
            await forwarder.sweep_once()
            await asyncio.sleep(0.2)
    finally:
        await channel.close(None)
        await engine.dispose()
    assert receipts(database_url) == [("applied", None), ("applied", None)]
    assert states(database_url, run) == ["delivered", "delivered"]


async def test_the_dispatch_service_refuses_callers_without_the_ingestor_token(
    dispatch: DispatchServer,
) -> None:
    async with aio.insecure_channel(dispatch.target) as channel:
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        for metadata, code in [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer test-backend-token"),), grpc.StatusCode.PERMISSION_DENIED),
        ]:
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.ApplyStatus(
                    dispatch_pb2.ApplyStatusRequest(), metadata=metadata, timeout=5
                )
            assert caught.value.code() == code
        reply = await stub.ApplyStatus(
            dispatch_pb2.ApplyStatusRequest(),
            metadata=(("authorization", f"Bearer {INGESTOR_TOKEN}"),),
            timeout=5,
        )
        assert list(reply.status_outcomes) == []
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.ApplyStatus(
                dispatch_pb2.ApplyStatusRequest(
                    statuses=[dispatch_pb2.StatusUpdate(status="sent")]
                ),
                metadata=(("authorization", f"Bearer {INGESTOR_TOKEN}"),),
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "statuses[0].provider_message_id" in (caught.value.details() or "")
        assert "statuses[0].provider_timestamp" in (caught.value.details() or "")


async def planned(database_url: str, receipts_: list[Receipt], **kwargs: Any) -> list[Any]:
    """The forwarder's plans for `receipts_` (its sender bindings read from the database)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        return await plan(engine, receipts_, **kwargs)
    finally:
        await engine.dispose()


def stored_receipt(database_url: str, body: bytes) -> uuid.UUID:
    """A pending receipt stored as the ingestor stores one (returns its id)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO webhook_receipt (body, body_sha256, signature_verdict, state)"
            " VALUES (%s, %s, 'valid', 'pending') RETURNING id",
            [body, hashlib.sha256(body).digest()],
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def apply_request(
    run: SeededRun, receipt_id: uuid.UUID, **settlement: str
) -> dispatch_pb2.ApplyStatusRequest:
    request = dispatch_pb2.ApplyStatusRequest(
        statuses=[
            dispatch_pb2.StatusUpdate(
                receipt_id=str(receipt_id),
                phone_number_id=SENDER,
                provider_message_id=run.wamids[0] or "",
                status="delivered",
                provider_timestamp=Timestamp(seconds=1_900_000_000),
            )
        ]
    )
    request.settle_receipts.add(receipt_id=str(receipt_id), **settlement)
    return request


INGESTOR = (("authorization", f"Bearer {INGESTOR_TOKEN}"),)


async def test_apply_status_settles_the_receipts_it_applies_in_the_same_transaction(
    database_url: str, dispatch: DispatchServer
) -> None:
    run = seed_run(database_url, 1)
    receipt_id = stored_receipt(database_url, b'{"stored": "as received"}')
    notes = json.dumps([{"path": "entry[0].changes[1]", "kind": "ignored", "reason": "x"}])
    request = apply_request(
        run,
        receipt_id,
        flag="ignored",
        phone_number_id=SENDER,
        workspace_id=str(run.workspace_id),
        notes_json=notes,
    )
    async with aio.insecure_channel(dispatch.target) as channel:
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        reply = await stub.ApplyStatus(request, metadata=INGESTOR, timeout=5)
        assert [r.receipt_id for r in reply.settled_receipts] == [str(receipt_id)]
        assert 0 <= reply.settled_receipts[0].lag_seconds < 60
        (settled,) = query(
            database_url,
            "SELECT state, flag, phone_number_id, workspace_id, notes, attempts, applied_at"
            " FROM webhook_receipt",
        )
        assert settled[:6] == (
            "applied",
            "ignored",
            SENDER,
            run.workspace_id,
            json.loads(notes),
            1,
        )
        assert states(database_url, run) == ["delivered"]
        # The same call again (a retry after a lost answer) applies a duplicate and settles
        # nothing: the receipt keeps what was recorded first.
        again = await stub.ApplyStatus(request, metadata=INGESTOR, timeout=5)
        assert list(again.status_outcomes) == [dispatch_pb2.APPLY_OUTCOME_DUPLICATE]
        assert list(again.settled_receipts) == []
        assert query(database_url, "SELECT attempts, applied_at FROM webhook_receipt") == [
            (1, settled[6])
        ]


async def test_apply_status_leaves_a_receipt_a_sweeper_holds_to_that_sweeper(
    database_url: str, dispatch: DispatchServer
) -> None:
    run = seed_run(database_url, 1)
    receipt_id = stored_receipt(database_url, b'{"held": "by a sweeper"}')
    async with aio.insecure_channel(dispatch.target) as channel:
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        with psycopg.connect(database_url) as sweeper:
            sweeper.execute(
                "SELECT id FROM webhook_receipt WHERE id = %s FOR NO KEY UPDATE", [receipt_id]
            )
            # Waiting for the sweeper's lock could wait for the sweeper's own ApplyStatus call;
            # the batch is applied and the receipt left to the sweeper instead.
            reply = await stub.ApplyStatus(
                apply_request(run, receipt_id), metadata=INGESTOR, timeout=5
            )
            assert list(reply.status_outcomes) == [dispatch_pb2.APPLY_OUTCOME_APPLIED]
            assert list(reply.settled_receipts) == []
        assert states(database_url, run) == ["delivered"]
        assert receipts(database_url) == [("pending", None)]


async def test_the_fresh_path_leaves_a_receipt_a_sweeper_holds_without_waiting_for_it(
    database_url: str, dispatch: DispatchServer
) -> None:
    """ApplyStatus skips settling a receipt a sweeper holds; the fresh path's own settlement of
    what is left must skip it too. It waited for the sweeper's transaction instead, which
    forwards a whole batch of receipts: during a backlog, each such wait held one of the
    forwarder's call slots for seconds (seen in bench/webhook_ingest.py as lock waits)."""
    run = seed_run(database_url, 1)
    body = statuses_body([status_item(run.wamids[0] or "", "delivered", 1_900_000_000)])
    receipt_id = stored_receipt(database_url, body)
    settings = webhook_settings(database_url, dispatch.target)
    engine = make_engine(database_url, pool_size=2)
    channel = aio.insecure_channel(dispatch.target, options=CHANNEL_OPTIONS)
    forwarder = Forwarder(settings, engine, channel)
    try:
        with psycopg.connect(database_url) as sweeper:
            sweeper.execute(
                "SELECT id FROM webhook_receipt WHERE id = %s FOR NO KEY UPDATE", [receipt_id]
            )
            started = time.monotonic()
            await asyncio.wait_for(
                forwarder._forward_fresh([Receipt(receipt_id, body, datetime.now(UTC))]), 10
            )
            waited = time.monotonic() - started
            assert receipts(database_url) == [("pending", None)]  # the sweeper's to settle
            sweeper.rollback()
    finally:
        await channel.close(None)
        await engine.dispose()
    assert waited < 5  # one call and one settlement, not a wait for the sweeper's lock
    assert states(database_url, run) == ["delivered"]


async def test_a_sweep_takes_the_receipts_it_claims_out_of_the_fresh_queue(
    database_url: str, dispatch: DispatchServer
) -> None:
    """Catching up, a sweep takes every pending receipt a second old, and during a backlog some
    still wait in this ingestor's fresh queue: they are forwarded once, by the sweep."""
    run = seed_run(database_url, 3)
    settings = webhook_settings(database_url, dispatch.target, webhook_sweep_min_age_seconds=60.0)
    engine = make_engine(database_url, pool_size=2)
    channel = aio.insecure_channel(dispatch.target, options=CHANNEL_OPTIONS)
    forwarder = Forwarder(settings, engine, channel)  # not started: its queue waits
    forwarded = REGISTRY.get_sample_value(
        "invites_webhook_updates_forwarded_total", {"kind": "statuses"}
    )
    try:
        bodies = [
            statuses_body([status_item(w or "", "delivered", 1_900_000_000)]) for w in run.wamids
        ]
        for body in bodies:
            forwarder.submit(Receipt(stored_receipt(database_url, body), body, datetime.now(UTC)))
        await asyncio.sleep(1.1)  # a second old: catching up (from start-up), sweeps take them
        assert await forwarder.sweep_once() == 3
        forwarder.start()  # the fresh path finds nothing left to forward
        await asyncio.sleep(0.3)
    finally:
        await forwarder.stop(1.0)
        await channel.close(None)
        await engine.dispose()
    assert receipts(database_url) == [("applied", None)] * 3
    assert states(database_url, run) == ["delivered"] * 3
    after = REGISTRY.get_sample_value(
        "invites_webhook_updates_forwarded_total", {"kind": "statuses"}
    )
    assert (after or 0) - (forwarded or 0) == 3  # each status once, none twice


async def test_apply_status_refuses_settlements_it_cannot_record(
    database_url: str, dispatch: DispatchServer
) -> None:
    run = seed_run(database_url, 1)
    request = apply_request(run, uuid.uuid4())
    request.settle_receipts.add(receipt_id="not-a-receipt")
    request.settle_receipts.add(receipt_id=str(uuid.uuid4()), workspace_id="nope")
    request.settle_receipts.add(receipt_id=str(uuid.uuid4()), flag="unknown_sender")
    request.settle_receipts.add(receipt_id=str(uuid.uuid4()), notes_json='{"not": "a list"}')
    request.settle_receipts.add(receipt_id=str(uuid.uuid4()), notes_json="[unclosed")
    request.settle_receipts.add()
    async with aio.insecure_channel(dispatch.target) as channel:
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.ApplyStatus(request, metadata=INGESTOR, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    for field in (
        "settle_receipts[1].receipt_id",
        "settle_receipts[2].workspace_id",
        "settle_receipts[3].flag",
        "settle_receipts[4].notes_json",
        "settle_receipts[5].notes_json",
        "settle_receipts[6].receipt_id",
    ):
        assert field in details
    assert states(database_url, run) == ["sent"]


async def test_the_writer_stores_each_body_exactly_and_headers_nobody_signed_safely(
    database_url: str,
) -> None:
    engine = make_engine(database_url, pool_size=2)
    writer = ReceiptWriter(engine)
    writer.start()
    bodies = [bytes(range(256)), b'{"a": 1}', '{"é": "\u0000"}'.encode()]
    odd = {"user-agent": "agent\udc80\x00", "content-type": "application/json", "x-other": "no"}
    try:
        stored = await asyncio.gather(
            *(writer.store(b, hashlib.sha256(b).digest(), odd) for b in [*bodies, bodies[1]])
        )
    finally:
        await writer.stop()
        await engine.dispose()
    # One batch: the repeated body is the same receipt (None for the second), the rest stored.
    assert sum(r is None for r in stored) == 1
    rows = query(database_url, "SELECT body, body_sha256, headers FROM webhook_receipt")
    assert sorted(bytes(r[0]) for r in rows) == sorted(bodies)
    assert all(bytes(r[1]) == hashlib.sha256(bytes(r[0])).digest() for r in rows)
    assert {json.dumps(r[2], sort_keys=True) for r in rows} == {
        json.dumps({"content-type": "application/json", "user-agent": "agent?"}, sort_keys=True)
    }


@pytest.mark.parametrize("statement", [receipts_sql.SETTLE, receipts_sql.SETTLE_UNLOCKED])
def test_settling_looks_receipts_up_by_id_never_through_the_pending_index(
    database_url: str, statement: Any
) -> None:
    # The partial index holds an entry for every receipt settled since the last vacuum; with
    # statistics saying next to nothing is pending the planner read it instead of the ids.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO webhook_receipt (body, body_sha256, signature_verdict, state)"
            " SELECT convert_to(i::text, 'utf8'), sha256(convert_to(i::text, 'utf8')), 'valid',"
            " CASE WHEN i % 1000 = 0 THEN 'pending' ELSE 'applied' END"
            " FROM generate_series(1, 20000) AS i"
        )
        conn.execute("ANALYZE webhook_receipt")
        ids = [r[0] for r in conn.execute("SELECT id FROM webhook_receipt LIMIT 30")]
        rows = json.dumps([{"id": str(i), "state": "applied"} for i in ids])
        sql = statement.text.replace(":rows", "%(rows)s")
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", {"rows": rows}))
    assert "on pk_webhook_receipt" in plan or "using pk_webhook_receipt" in plan
    assert "ix_webhook_receipt_pending" not in plan
    assert "Seq Scan" not in plan


def young_receipts(conn: psycopg.Connection[Any], batch: int) -> list[Any]:
    """A table of 13,000 pending receipts analysed at 1,000 (any install's first weeks); the
    ids of `batch` of them."""
    insert = (
        "INSERT INTO webhook_receipt (body, body_sha256, signature_verdict, state)"
        " SELECT convert_to(i::text, 'utf8'), sha256(convert_to(i::text, 'utf8')), 'valid',"
        " 'pending' FROM generate_series(%s::int, %s::int) AS i"
    )
    conn.execute(insert, [1, 1000])
    conn.execute("ANALYZE webhook_receipt")
    conn.execute(insert, [1001, 13000])
    return [r[0] for r in conn.execute("SELECT id FROM webhook_receipt LIMIT %s", [batch])]


@pytest.mark.parametrize("statement", [receipts_sql.SETTLE, receipts_sql.SETTLE_UNLOCKED])
def test_settling_reads_a_young_table_by_key_not_whole(database_url: str, statement: Any) -> None:
    """A batch of 160 receipts (one status per POST) in a young table: with the ids' count in
    sight the planner scanned the whole table, twice (14.5 ms at 13,000 receipts, 3.2-3.6 ms
    through the key)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = young_receipts(conn, 160)
        rows = json.dumps([{"id": str(i), "state": "applied"} for i in ids])
        sql = statement.text.replace(":rows", "%(rows)s")
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", {"rows": rows}))
    assert "pk_webhook_receipt" in plan
    assert "Seq Scan on webhook_receipt" not in plan


def test_status_events_find_their_receipts_by_key_in_a_young_table(database_url: str) -> None:
    """Joined to the statuses, the receipt table was scanned whole (3.6 ms a call at 13,000
    receipts); each status's receipt is looked up by key instead."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = young_receipts(conn, 160)
        rows = json.dumps(
            [
                {"wamid": f"wamid.{n}", "status": "read", "receipt_id": str(i)}
                for n, i in enumerate(ids)
            ]
        )
        sql = status_sql.INSERT_EVENTS.text.replace(":rows", "%(rows)s").replace(
            ":provider", "%(provider)s"
        )
        plan = "\n".join(
            r[0] for r in conn.execute(f"EXPLAIN {sql}", {"rows": rows, "provider": "meta"})
        )
    assert "pk_webhook_receipt" in plan
    assert "Seq Scan on webhook_receipt" not in plan


async def test_receipts_past_a_full_forward_queue_are_swept_within_seconds_not_a_minute(
    database_url: str, dispatch: DispatchServer
) -> None:
    run = seed_run(database_url, 3)
    settings = webhook_settings(
        database_url,
        dispatch.target,
        webhook_forward_queue_limit=1,
        webhook_sweep_min_age_seconds=60.0,
    )
    engine = make_engine(database_url, pool_size=2)
    channel = aio.insecure_channel(dispatch.target, options=CHANNEL_OPTIONS)
    forwarder = Forwarder(settings, engine, channel)  # not started: nothing drains its queue
    try:
        await asyncio.sleep(1.6)  # past the start-up's catching up
        assert await forwarder.sweep_once() == 0  # a clean sweep: no longer catching up
        ids = [
            stored_receipt(
                database_url, statuses_body([status_item(w or "", "delivered", 1_900_000_000)])
            )
            for w in run.wamids
        ]
        for receipt_id in ids:
            forwarder.submit(Receipt(receipt_id, b"", datetime.now(UTC)))
        assert await forwarder.sweep_once() == 0  # younger than a second: the fresh path's
        await asyncio.sleep(1.1)
        # The two the queue could not take are a second old: swept now, not after a minute
        # (the one queued is swept too, as after any outage: its statuses apply once).
        assert await forwarder.sweep_once() == 3
    finally:
        await channel.close(None)
        await engine.dispose()
    assert receipts(database_url) == [("applied", None)] * 3
    assert states(database_url, run) == ["delivered"] * 3


async def test_while_postgres_hangs_the_writer_holds_bounded_bytes_and_refuses_the_rest(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Postgres hangs (here: a lock the inserts wait for). Every POST used to wait in memory for
    # ever, each redelivery of it too; past the bound a POST is refused at once (503: its sender
    # redelivers it), and the held ones are stored once Postgres answers.
    monkeypatch.setattr(ReceiptWriter, "MAX_HELD_BYTES", 3_000)
    engine = make_engine(database_url, pool_size=2)
    writer = ReceiptWriter(engine)
    writer.start()

    def body(n: int) -> tuple[bytes, bytes]:
        data = b'{"n": %d, "pad": "%s"}' % (n, b"x" * 900)
        return data, hashlib.sha256(data).digest()

    try:
        with psycopg.connect(database_url) as blocker:
            blocker.execute("LOCK TABLE webhook_receipt IN ACCESS EXCLUSIVE MODE")
            held = [asyncio.create_task(writer.store(*body(n), {})) for n in range(3)]
            await asyncio.sleep(0.3)
            assert not any(task.done() for task in held)  # waiting for Postgres
            with pytest.raises(ConnectionError, match="too many bodies"):
                await writer.store(*body(3), {})
            blocker.rollback()  # Postgres answers again
        assert all(r is not None for r in await asyncio.gather(*held))
        assert await writer.store(*body(3), {}) is not None  # room again
    finally:
        await writer.stop()
        await engine.dispose()
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(4,)]


async def test_the_fresh_queue_is_bounded_in_bytes_as_in_receipts(
    database_url: str, dispatch: DispatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forwarder_module, "FORWARD_QUEUE_BYTES", 2_500)
    settings = webhook_settings(database_url, dispatch.target)
    engine = make_engine(database_url, pool_size=1)
    channel = aio.insecure_channel(dispatch.target, options=CHANNEL_OPTIONS)
    forwarder = Forwarder(settings, engine, channel)  # not started: nothing drains its queue
    left = REGISTRY.get_sample_value("invites_webhook_left_to_sweeper_total") or 0.0
    try:
        for _ in range(4):
            forwarder.submit(Receipt(uuid.uuid4(), b"x" * 1_000, datetime.now(UTC)))
        assert len(forwarder._queue) == 2
        assert (REGISTRY.get_sample_value("invites_webhook_left_to_sweeper_total") or 0.0) == (
            left + 2
        )
    finally:
        await channel.close(None)
        await engine.dispose()


async def test_the_writer_batches_bodies_that_arrive_while_a_flush_is_out(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A linger long enough to be unmistakable: under load (a flush already out) newcomers wait
    # for it and share one INSERT; a body that arrives when nothing is out goes at once.
    monkeypatch.setattr(ReceiptWriter, "LINGER_SECONDS", 0.3)
    engine = make_engine(database_url, pool_size=2)
    writer = ReceiptWriter(engine)
    batches: list[int] = []
    insert = writer._insert

    async def counted(batch: list[Any]) -> None:
        batches.append(len(batch))
        if len(batches) > 1:
            await asyncio.sleep(0.1)  # a slow commit: the next bodies arrive while it is out
        await insert(batch)

    monkeypatch.setattr(writer, "_insert", counted)
    writer.start()

    def body(n: int) -> tuple[bytes, bytes]:
        data = f'{{"n": {n}}}'.encode()
        return data, hashlib.sha256(data).digest()

    try:
        began = asyncio.get_running_loop().time()
        assert await writer.store(*body(0), {}) is not None
        assert asyncio.get_running_loop().time() - began < 0.25  # idle: no linger
        stores = [asyncio.create_task(writer.store(*body(1), {}))]
        await asyncio.sleep(0)  # its flush is out
        for n in range(2, 12):
            await asyncio.sleep(0.005)
            stores.append(asyncio.create_task(writer.store(*body(n), {})))
        assert all(r is not None for r in await asyncio.gather(*stores))
    finally:
        await writer.stop()
        await engine.dispose()
    assert batches == [1, 1, 10]
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(12,)]


async def test_identical_posts_at_the_same_moment_are_one_receipt(
    database_url: str, post: Post
) -> None:
    body = statuses_body([status_item("wamid.same", "sent", 1_900_000_000)])
    responses = await asyncio.gather(*(post(body) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(1,)]


async def test_requests_are_cut_at_the_update_limit_without_splitting_a_receipt(
    database_url: str,
) -> None:
    seed_run(database_url, 1)
    bodies = [
        statuses_body([status_item(f"wamid.p{n}.{k}", "sent", 1_900_000_000) for k in range(3)])
        for n in range(4)
    ]
    receipts_ = [Receipt(uuid.uuid4(), body, datetime.now(UTC)) for body in bodies]
    plans = await planned(database_url, receipts_, max_updates=5)
    assert [len(p.request.statuses) for p in plans] == [3, 3, 3, 3]
    assert [s.receipt_id for p in plans for s in p.forwarded] == [r.id for r in receipts_]


async def test_a_receipt_whose_updates_a_request_cannot_carry_is_flagged_alone(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A value protobuf refuses, half-way through a receipt's updates (none is known today: the
    # normaliser reads what it can check; this injects one): that receipt is flagged and the
    # request keeps exactly the others' updates.
    seed_run(database_url, 1)
    real = forwarder_module._timestamp

    def refusing(seconds: int) -> Any:
        if seconds == 1_900_000_009:
            raise ValueError("Value out of range")
        return real(seconds)

    monkeypatch.setattr(forwarder_module, "_timestamp", refusing)
    good = statuses_body([status_item("wamid.good", "read", 1_900_000_000)])
    bad = statuses_body(
        [
            status_item("wamid.ok", "sent", 1_900_000_001),
            status_item("wamid.bad", "read", 1_900_000_009),
        ]
    )
    receipts_ = [Receipt(uuid.uuid4(), body, datetime.now(UTC)) for body in (good, bad, good)]
    (work,) = await planned(database_url, receipts_)
    assert [s.provider_message_id for s in work.request.statuses] == ["wamid.good", "wamid.good"]
    assert [s.receipt_id for s in work.forwarded] == [receipts_[0].id, receipts_[2].id]
    assert [(s.receipt_id, s.state, s.flag) for s in work.settled] == [
        (receipts_[1].id, "flagged", "unknown_shape")
    ]


async def test_requests_stay_far_below_grpcs_limit_whatever_the_backlogs_texts(
    database_url: str,
) -> None:
    # Eighty inbound texts of 60,000 characters (a backlog after an outage): the update limit
    # alone made one request of about 5 MB, over gRPC's 4 MB, refused at every sweep.
    seed_run(database_url, 1)
    bodies = [
        encode(
            envelope(
                [
                    change(
                        {
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": f"wamid.LONG{n}",
                                    "timestamp": "1900000000",
                                    "type": "text",
                                    "text": {"body": "x" * 60_000},
                                }
                            ]
                        }
                    )
                ]
            )
        )
        for n in range(80)
    ]
    receipts_ = [Receipt(uuid.uuid4(), body, datetime.now(UTC)) for body in bodies]
    plans = await planned(database_url, receipts_)
    assert len(plans) > 1
    assert max(p.request.ByteSize() for p in plans) < 2_100_000
    assert [s.receipt_id for p in plans for s in p.forwarded] == [r.id for r in receipts_]
    assert sum(len(p.request.inbound_texts) for p in plans) == 80


async def test_metrics_count_posts_by_verdict(client: TestClient[Any, Any], post: Post) -> None:
    def value(verdict: str) -> float:
        sample = REGISTRY.get_sample_value("invites_webhook_posts_total", {"verdict": verdict})
        return sample or 0.0

    verdicts = ("stored", "duplicate", "signature_mismatch", "signature_missing")
    before = {v: value(v) for v in verdicts}
    body = statuses_body([status_item("wamid.metrics", "sent", 1_900_000_000)])
    await post(body)
    await post(body)
    await post(body, signature=sign(body, "wrong"))
    await post(body, signature=None)
    assert {v: value(v) - before[v] for v in verdicts} == dict.fromkeys(verdicts, 1.0)
    text = await (await client.get("/metrics")).text()
    assert 'invites_webhook_posts_total{verdict="stored"}' in text
    assert "invites_webhook_unapplied_receipts" in text


async def test_a_paused_template_webhook_pauses_the_run_through_the_ingestor(
    database_url: str, post: Post, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    started = await precheck_and_start(sessions, world)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workspace SET waba_id = '102290129340398' WHERE id = %s",
            (world.workspace_id,),
        )
        conn.execute(
            "UPDATE template SET name = 'wedding_invite' WHERE id = %s", (world.template_id,)
        )
    assert (await post((CORPUS / "template_status_update.json").read_bytes())).status == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)])
    assert query(
        database_url,
        "SELECT r.id, r.state, r.pause_reason, t.status FROM invite_send_run r"
        " JOIN template t ON t.id = r.template_id",
    ) == [
        (
            started.run.id,
            "paused",
            "template wedding_invite (en_US) is PAUSED on Meta: "
            "FIRST_PAUSE: Paused for low quality",
            "PAUSED",
        )
    ]


async def test_metas_messaging_limit_webhooks_set_the_workspaces_limit_newest_first(
    database_url: str, post: Post
) -> None:
    """business_capability_update (2000, an integer) and phone_number_quality_update (TIER_10K)
    reach the workspace of their WABA through the ingestor; delivered newest first, the newer
    one's limit is what stays; each change is audited with no actor."""
    world = seed_world(database_url, ["+14155550101"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workspace SET waba_id = '102290129340398' WHERE id = %s",
            (world.workspace_id,),
        )
    newer = (CORPUS / "phone_number_quality_update.json").read_bytes()  # entry.time 1750034000
    older = (CORPUS / "business_capability_update.json").read_bytes()  # entry.time 1750030400
    assert (await post(newer)).status == 200
    assert (await post(older)).status == 200
    await eventually(lambda: receipts(database_url) == [("applied", None), ("applied", None)])
    assert query(
        database_url,
        "SELECT messaging_limit, messaging_limit_source, messaging_limit_updated_at"
        " FROM workspace WHERE id = %s",
        world.workspace_id,
    ) == [(10_000, "provider", datetime.fromtimestamp(1750034000, UTC))]
    audited = query(
        database_url,
        "SELECT actor_id, details->>'to', details->>'field' FROM audit_entry"
        " WHERE action = 'workspace.messaging_limit' ORDER BY id",
    )
    # the older one is audited too when the two reached the dispatch service in one batch (it is
    # applied first, then the newer), never after the newer
    assert audited[-1] == (None, "10000", "phone_number_quality_update")
    assert set(audited) <= {
        (None, "2000", "business_capability_update"),
        (None, "10000", "phone_number_quality_update"),
    }


async def test_a_receipt_whose_store_failed_after_its_commit_is_applied_within_seconds(
    database_url: str, dispatch: DispatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database went away after committing a flush, before the writer heard of it: the POST
    # answered 503, the row is pending, and Meta's redelivery is a duplicate that hands nothing
    # to the forwarder. Without catching up it would wait WEBHOOK_SWEEP_MIN_AGE_SECONDS.
    run = seed_run(database_url, 1)
    store = ReceiptWriter.store
    lost: list[bool] = []

    async def committed_then_lost(writer: ReceiptWriter, *args: Any, **kwargs: Any) -> Any:
        receipt = await store(writer, *args, **kwargs)
        if not lost:
            lost.append(True)
            raise ConnectionError("server closed the connection unexpectedly")
        return receipt

    monkeypatch.setattr(ReceiptWriter, "store", committed_then_lost)
    settings = webhook_settings(database_url, dispatch.target, webhook_sweep_min_age_seconds=60.0)
    deps = WebhookDeps(
        make_engine(database_url, pool_size=4), aio.insecure_channel(dispatch.target)
    )
    body = statuses_body([status_item(run.wamids[0] or "", "delivered", 1_900_000_000)])
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, SECRET)}
    app = create_app(settings, deps)
    async with TestClient(TestServer(app)) as client:
        forwarder = app[FORWARDER]
        await eventually(lambda: not forwarder._catching_up)  # start-up's catching up is over
        assert (await client.post(PATH, data=body, headers=headers)).status == 503
        assert (await client.post(PATH, data=body, headers=headers)).status == 200  # duplicate
        await eventually(lambda: receipts(database_url) == [("applied", None)], timeout=5.0)
    assert states(database_url, run) == ["delivered"]
