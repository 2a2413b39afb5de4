"""POST /webhooks/twilio on real Postgres with a real in-process dispatch service.

Callbacks are signed with Twilio's own helper library (`twilio.request_validator`), not with our
code: the ingestor's X-Twilio-Signature check must agree with it. Refused callbacks (unsigned,
tampered, signed for another URL or with another token) store nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from grpc import aio
from twilio.request_validator import RequestValidator

from common.db.engine import make_engine
from tests.integration.test_ingestor import (
    DispatchServer,
    eventually,
    query,
    receipts,
    states,
    webhook_settings,
)
from tests.status_support import SeededRun, seed_run
from webhook_service.app import Deps as WebhookDeps
from webhook_service.app import create_app

TOKEN, NEXT_TOKEN = "twilio-test-auth-token-0001", "twilio-test-auth-token-0002"
PUBLIC_URL = "https://hooks.example.org/webhooks/twilio"
PATH = "/webhooks/twilio"
ACCOUNT = "AC" + "a" * 32
SENDER = "whatsapp:+15550001111"


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
    settings = webhook_settings(
        database_url,
        dispatch.target,
        twilio_auth_token=f"{TOKEN},{NEXT_TOKEN}",
        twilio_webhook_url=PUBLIC_URL,
    )
    deps = WebhookDeps(
        make_engine(database_url, pool_size=4), aio.insecure_channel(dispatch.target)
    )
    async with TestClient(TestServer(create_app(settings, deps))) as test_client:
        yield test_client


def twilio_run(database_url: str, count: int = 1, state: str = "sent") -> SeededRun:
    """A Twilio workspace's run whose messages carry Twilio message SIDs."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        workspace = uuid.uuid4()
        conn.execute(
            "INSERT INTO workspace (id, name, default_region, sender_phone_number_id,"
            " sender_provider, twilio_account_sid) VALUES (%s, 'T', 'US', %s, 'twilio', %s)",
            [workspace, SENDER, ACCOUNT],
        )
    run = seed_run(database_url, count, sender=SENDER, state=state, workspace_id=workspace)
    sids = [f"SM{uuid.uuid4().hex}" for _ in run.message_ids]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for message_id, sid in zip(run.message_ids, sids, strict=True):
            conn.execute(
                "UPDATE invite_message SET provider = 'twilio', provider_message_id = %s"
                " WHERE id = %s",
                [sid, message_id],
            )
    return SeededRun(run.workspace_id, run.run_id, run.message_ids, list(sids), run.phones)


def status_form(run: SeededRun, n: int, status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": run.wamids[n] or "",
        "SmsSid": run.wamids[n] or "",
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": ACCOUNT,
        "From": SENDER,
        "To": "whatsapp:" + run.phones[n],
        "ApiVersion": "2010-04-01",
        "ChannelPrefix": "whatsapp",
        **extra,
    }


async def post_signed(
    client: TestClient[Any, Any],
    form: dict[str, str],
    *,
    query_string: str = "",
    token: str = TOKEN,
    signed_url: str | None = None,
    signature: str | None = "sign",
    body: bytes | None = None,
) -> int:
    url = f"{PUBLIC_URL}?{query_string}" if query_string else PUBLIC_URL
    if signature == "sign":
        signature = RequestValidator(token).compute_signature(signed_url or url, form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    path = f"{PATH}?{query_string}" if query_string else PATH
    data = body if body is not None else urlencode(form).encode()
    response = await client.post(path, data=data, headers=headers)
    return response.status


async def test_callbacks_signed_by_twilios_library_are_stored_and_applied(
    database_url: str, client: TestClient[Any, Any]
) -> None:
    run = twilio_run(database_url, 3)
    callback = f"m={run.message_ids[0]}"
    assert await post_signed(client, status_form(run, 0, "delivered"), query_string=callback) == 200
    assert await post_signed(client, status_form(run, 1, "read"), token=NEXT_TOKEN) == 200
    failed = status_form(run, 2, "undelivered", ErrorCode="63024", ErrorMessage="Invalid")
    assert await post_signed(client, failed) == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)] * 3)
    assert states(database_url, run) == ["delivered", "read", "failed"]
    rows = query(
        database_url,
        "SELECT provider, headers ? 'x-twilio-signature', phone_number_id, workspace_id"
        " FROM webhook_receipt",
    )
    assert {row[0] for row in rows} == {"twilio"}
    assert all(row[1] and row[2] == SENDER and row[3] == run.workspace_id for row in rows)
    (error,) = query(
        database_url, "SELECT error_code FROM invite_message WHERE id = %s", run.message_ids[2]
    )
    assert error == (63024,)
    # Recorded as Twilio's (they were stored as Meta's until StatusUpdate.provider), each with
    # its message, matched by SID where no callback data came with it.
    events = query(database_url, "SELECT provider, message_id, outcome FROM status_event")
    assert sorted(events) == sorted(("twilio", m, "applied") for m in run.message_ids)


async def test_initial_statuses_change_nothing_and_sending_means_sent(
    database_url: str, client: TestClient[Any, Any]
) -> None:
    run = twilio_run(database_url, 1, state="sending")
    for status in ("queued", "accepted", "scheduled"):
        assert await post_signed(client, status_form(run, 0, status)) == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)] * 3)
    assert states(database_url, run) == ["sending"]
    assert await post_signed(client, status_form(run, 0, "sending")) == 200
    await eventually(lambda: states(database_url, run) == ["sent"])


async def test_a_status_before_the_sid_was_recorded_matches_by_the_callback_url(
    database_url: str, client: TestClient[Any, Any]
) -> None:
    run = twilio_run(database_url, 1, state="sending")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invite_message SET provider_message_id = NULL WHERE id = %s",
            [run.message_ids[0]],
        )
    form = status_form(run, 0, "delivered")
    assert await post_signed(client, form, query_string=f"m={run.message_ids[0]}") == 200
    await eventually(lambda: states(database_url, run) == ["delivered"])
    (sid,) = query(
        database_url,
        "SELECT provider_message_id FROM invite_message WHERE id = %s",
        run.message_ids[0],
    )
    assert sid == (run.wamids[0],)


async def test_tampered_unsigned_wrong_url_and_wrong_token_callbacks_store_nothing(
    database_url: str, client: TestClient[Any, Any]
) -> None:
    run = twilio_run(database_url, 1)
    form = status_form(run, 0, "read")
    good = RequestValidator(TOKEN).compute_signature(PUBLIC_URL, form)
    tampered = urlencode({**form, "MessageStatus": "failed"}).encode()
    cases = [
        (await post_signed(client, form, signature=None), 401),
        (await post_signed(client, form, signature=""), 401),
        (await post_signed(client, form, signature=good, body=tampered), 403),
        (await post_signed(client, form, token="another-auth-token-000"), 403),
        (
            await post_signed(client, form, signed_url="https://evil.example.org/webhooks/twilio"),
            403,
        ),
        (await post_signed(client, form, signed_url=PUBLIC_URL + "?m=1", query_string=""), 403),
        (await post_signed(client, form, signed_url=PUBLIC_URL, query_string="m=2"), 403),
    ]
    assert [status for status, _ in cases] == [expected for _, expected in cases]
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(0,)]
    assert states(database_url, run) == ["sent"]


async def test_the_port_quirk_accepts_a_signature_over_the_default_port(
    database_url: str, client: TestClient[Any, Any]
) -> None:
    run = twilio_run(database_url, 1)
    form = status_form(run, 0, "delivered")
    with_port = PUBLIC_URL.replace("example.org/", "example.org:443/")
    assert await post_signed(client, form, signed_url=with_port) == 200
    await eventually(lambda: states(database_url, run) == ["delivered"])


async def test_an_inbound_stop_adds_the_sender_to_do_not_message(
    database_url: str, client: TestClient[Any, Any]
) -> None:
    run = twilio_run(database_url, 2)
    inbound = {
        "MessageSid": "SM" + "1" * 32,
        "SmsStatus": "received",
        "AccountSid": ACCOUNT,
        "From": "whatsapp:" + run.phones[0],
        "To": SENDER,
        "Body": "Stop",
        "NumMedia": "0",
    }
    opt_out = {
        **inbound,
        "MessageSid": "SM" + "2" * 32,
        "From": "whatsapp:" + run.phones[1],
        "Body": "ARRET-PLEASE",
        "OptOutType": "STOP",
    }
    assert await post_signed(client, inbound) == 200
    assert await post_signed(client, opt_out) == 200
    await eventually(lambda: receipts(database_url) == [("applied", None)] * 2)
    rows = query(
        database_url,
        "SELECT phone_e164, source FROM do_not_message_entry WHERE workspace_id = %s"
        " ORDER BY phone_e164",
        run.workspace_id,
    )
    assert rows == sorted((phone, "inbound_stop_keyword") for phone in run.phones)


async def test_without_a_twilio_token_the_route_is_not_served(
    database_url: str, dispatch: DispatchServer
) -> None:
    settings = webhook_settings(database_url, dispatch.target)
    deps = WebhookDeps(
        make_engine(database_url, pool_size=2), aio.insecure_channel(dispatch.target)
    )
    async with TestClient(TestServer(create_app(settings, deps))) as meta_only:
        form = {"MessageSid": "SM1", "MessageStatus": "read"}
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL, form)
        assert await post_signed(meta_only, form, signature=signature) == 404
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(0,)]
