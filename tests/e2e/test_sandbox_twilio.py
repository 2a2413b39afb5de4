"""The sandbox playing Twilio, over real HTTP: the Messages API's answers and error bodies, the
ledger, and status callbacks whose X-Twilio-Signature Twilio's own RequestValidator accepts."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import httpx
from twilio.request_validator import RequestValidator

from sandbox.scenario import Scenario
from sandbox.testing import local_settings, serve, serve_recorder
from sandbox.twilio import content_sid

TOKEN = "sandbox-twilio-token-1"
ACCOUNT = "AC" + "5" * 32
SENDER = "whatsapp:+15550783881"
FAST = {
    "sent": {"ms": 0},
    "delivered": {"ms": 10},
    "read": {"ms": 10},
    "failed": {"ms": 0},
    "delivered_share": 1.0,
    "read_share": 1.0,
    "read_without_delivered_share": 0.0,
}


def scenario(faults: list[dict[str, Any]] | None = None) -> Scenario:
    return Scenario.model_validate(
        {
            "seed": 5,
            "templates": [{"name": "event_invitation", "language": "en_US", "body_params": 2}],
            "faults": faults or [],
            "webhooks": FAST,
        }
    )


def message(to: str, callback: str, **extra: str) -> dict[str, str]:
    return {
        "To": f"whatsapp:+{to}",
        "From": SENDER,
        "ContentSid": content_sid("event_invitation", "en_US"),
        "ContentVariables": '{"1": "Jane", "2": "Sat 12 Oct"}',
        "StatusCallback": callback,
        **extra,
    }


async def test_a_send_is_answered_as_twilio_and_its_callbacks_validate_with_twilios_library() -> (
    None
):
    async with (
        serve_recorder() as hooks,
        serve(local_settings(twilio_auth_token=TOKEN), scenario=scenario()) as sandbox,
        httpx.AsyncClient(timeout=5) as client,
    ):
        callback = f"{hooks.url}?m=our-message-1"
        url = f"{sandbox.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        reply = await client.post(url, data=message("16505551234", callback), auth=(ACCOUNT, TOKEN))
        assert reply.status_code == 201
        resource = reply.json()
        assert resource["sid"].startswith("SM")
        assert len(resource["sid"]) == 34
        assert (resource["status"], resource["account_sid"]) == ("queued", ACCOUNT)
        posts = await hooks.wait_for_posts(3)
    validator = RequestValidator(TOKEN)
    statuses = []
    for post in posts:
        form = dict(parse_qsl(post.body.decode()))
        assert validator.validate(callback, form, post.headers["X-Twilio-Signature"])
        assert not RequestValidator("another-token").validate(
            callback, form, post.headers["X-Twilio-Signature"]
        )
        assert (form["MessageSid"], form["AccountSid"], form["From"]) == (
            resource["sid"],
            ACCOUNT,
            SENDER,
        )
        statuses.append(form["MessageStatus"])
    assert statuses == ["sent", "delivered", "read"]
    (entry,) = sandbox.service.ledger.entries
    assert (entry.wamid, entry.callback_data, entry.parameters) == (
        resource["sid"],
        "our-message-1",
        ("Jane", "Sat 12 Oct"),
    )


async def test_errors_are_twilios_codes_and_bodies() -> None:
    faults = [
        {"code": 131026, "recipients": ["16505550001"]},  # asynchronous, as on Meta
        {"code": 131050, "recipients": ["16505550002"]},
    ]
    async with (
        serve_recorder() as hooks,
        serve(local_settings(twilio_auth_token=TOKEN), scenario=scenario(faults)) as sandbox,
        httpx.AsyncClient(timeout=5) as client,
    ):
        url = f"{sandbox.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"

        async def post(data: dict[str, str], auth: tuple[str, str] = (ACCOUNT, TOKEN)) -> Any:
            reply = await client.post(url, data=data, auth=auth)
            body = reply.json()
            assert set(body) >= {"code", "message", "more_info", "status"}
            assert body["status"] == reply.status_code
            return body["code"]

        hook = hooks.url
        accepted = await client.post(url, data=message("16505550001", hook), auth=(ACCOUNT, TOKEN))
        assert accepted.status_code == 201
        (failure,) = await hooks.wait_for_posts(1)
        form = dict(parse_qsl(failure.body.decode()))
        assert RequestValidator(TOKEN).validate(hook, form, failure.headers["X-Twilio-Signature"])
        assert (form["MessageStatus"], form["ErrorCode"]) == ("undelivered", "63024")
        assert await post(message("16505550002", hook)) == 21610
        assert await post(message("16505550003", hook), auth=(ACCOUNT, "wrong")) == 20003
        assert await post(message("16505550003", hook, ContentSid="HX" + "0" * 32)) == 21655
        assert await post(message("not-a-number", hook)) == 21211
        assert len(sandbox.service.ledger.entries) == 1


async def test_without_a_twilio_token_the_sandbox_plays_meta_only() -> None:
    async with (
        serve(local_settings(), scenario=scenario()) as sandbox,
        httpx.AsyncClient(timeout=5) as client,
    ):
        url = f"{sandbox.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        reply = await client.post(url, data=message("16505551234", "http://h/x"))
        assert reply.status_code == 404
