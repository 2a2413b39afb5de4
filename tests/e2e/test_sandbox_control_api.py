"""The /_sandbox control API: off by default, and each route doing what it says."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.scenario import Scenario
from sandbox.testing import (
    TEST_ACCESS_TOKEN,
    RunningSandbox,
    local_settings,
    serve,
    serve_recorder,
    template_message,
)

AUTH = {"Authorization": f"Bearer {TEST_ACCESS_TOKEN}"}
TEMPLATE = {"name": "event_invitation", "language": "en_US", "body_params": 2}
INSTANT_SENT_ONLY = {"sent": {"ms": 0}, "delivered_share": 0, "batching": {"linger_ms": 0}}


def scenario(**fields: Any) -> Scenario:
    return Scenario.model_validate(
        {"seed": 1, "templates": [TEMPLATE], "webhooks": INSTANT_SENT_ONLY, **fields}
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def send(
    client: httpx.AsyncClient, sandbox: RunningSandbox, to: str = "16505551234", **kw: Any
) -> httpx.Response:
    return await client.post(sandbox.send_url(), json=template_message(to, **kw), headers=AUTH)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_sandbox/ledger"),
        ("GET", "/_sandbox/stats"),
        ("GET", "/_sandbox/recipients"),
        ("POST", "/_sandbox/reset"),
        ("PATCH", "/_sandbox/scenario"),
        ("PUT", "/_sandbox/scenario"),
        ("POST", "/_sandbox/templates"),
        ("POST", "/_sandbox/webhooks/flush"),
        ("POST", "/_sandbox/events/inbound-text"),
        ("POST", "/_sandbox/events/call"),
        ("POST", "/_sandbox/events/echo"),
    ],
)
async def test_control_routes_are_absent_unless_enabled(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    async with serve(local_settings(control_enabled=False), scenario=scenario()) as sandbox:
        control = await client.request(method, sandbox.base_url + path, json={})
        graph = await send(client, sandbox)
        health = await client.get(f"{sandbox.base_url}/healthz")

    assert control.status_code == 404
    assert graph.status_code == 200
    assert health.json() == {"status": "ok"}


async def test_control_routes_are_not_under_the_graph_path(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        response = await client.get(f"{sandbox.base_url}/v24.0/_sandbox/ledger", headers=AUTH)

    assert response.status_code == 404


async def test_ledger_paging_and_per_recipient_counts(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        for to in ("16505550001", "16505550002", "16505550001"):
            await send(client, sandbox, to)
        base = sandbox.base_url
        page = (await client.get(f"{base}/_sandbox/ledger", params={"limit": 2})).json()
        rest = (await client.get(f"{base}/_sandbox/ledger", params={"after": 2})).json()
        one = (await client.get(f"{base}/_sandbox/ledger", params={"to": "+1 650 555 0001"})).json()
        recipients = (await client.get(f"{base}/_sandbox/recipients")).json()
        stats = (await client.get(f"{base}/_sandbox/stats")).json()

    assert [e["seq"] for e in page["entries"]] == [1, 2]
    assert page["next_after"] == 2
    assert [e["seq"] for e in rest["entries"]] == [3]
    assert [e["seq"] for e in one["entries"]] == [1, 3]
    assert recipients == {"16505550001": 2, "16505550002": 1}
    assert stats["recipients_sent_more_than_once"] == {"16505550001": 2}
    assert stats["accepted"] == 3


async def test_reset_forgets_sends_and_restarts_the_seeded_sequence(
    client: httpx.AsyncClient,
) -> None:
    coin = scenario(faults=[{"code": 131000, "rate": 0.5}])
    async with serve(local_settings(), scenario=coin) as sandbox:
        first = [(await send(client, sandbox)).status_code for _ in range(12)]
        reset = await client.post(f"{sandbox.base_url}/_sandbox/reset")
        stats = (await client.get(f"{sandbox.base_url}/_sandbox/stats")).json()
        second = [(await send(client, sandbox)).status_code for _ in range(12)]

    assert reset.json() == {"reset": True}
    assert stats["accepted"] == 0
    assert set(first) == {200, 500}
    assert first == second


async def test_reset_drops_pending_webhooks_and_delivery_goes_on(
    client: httpx.AsyncClient,
) -> None:
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario()) as sandbox,
    ):
        url = sandbox.base_url
        await client.patch(f"{url}/_sandbox/scenario", json={"webhooks": {"sent": {"ms": 60_000}}})
        await send(client, sandbox, "16505550001")
        await client.post(f"{url}/_sandbox/reset")
        flushed = await client.post(
            f"{url}/_sandbox/webhooks/flush", json={"include_scheduled": True}
        )
        await client.patch(f"{url}/_sandbox/scenario", json={"webhooks": {"sent": {"ms": 0}}})
        wamid = (await send(client, sandbox, "16505550002")).json()["messages"][0]["id"]
        [status] = await hooks.wait_for_statuses(1)

    assert flushed.json()["released"] == 0
    assert (status["id"], status["recipient_id"]) == (wamid, "16505550002")


async def test_scenario_patch_toggles_account_errors(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        url = f"{sandbox.base_url}/_sandbox/scenario"
        restricted = await client.patch(url, json={"account": {"error_code": 368}})
        blocked = await send(client, sandbox)
        await client.patch(url, json={"account": {"error_code": None}})
        unblocked = await send(client, sandbox)

    assert restricted.json()["account"]["error_code"] == 368
    assert blocked.status_code == 403
    assert blocked.json()["error"]["code"] == 368
    assert unblocked.status_code == 200


async def test_scenario_put_replaces_and_invalid_scenarios_are_400(
    client: httpx.AsyncClient,
) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        url = f"{sandbox.base_url}/_sandbox/scenario"
        invalid = await client.patch(url, json={"webhooks": {"read_share": 2}})
        not_json = await client.put(url, content=b"{", headers={"Content-Type": "application/json"})
        replaced = await client.put(url, json={"throughput": {"max_per_second": 1}})
        unknown_template = await send(client, sandbox)
        current = (await client.get(url)).json()

    assert invalid.status_code == 400
    assert invalid.json()["problems"][0]["loc"] == ["webhooks", "read_share"]
    assert not_json.status_code == 400
    assert replaced.status_code == 200
    assert unknown_template.json()["error"]["code"] == 132001  # PUT dropped the templates
    assert current["throughput"] == {"max_per_second": 1}


async def test_template_registration(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario(templates=[])) as sandbox:
        before = await send(client, sandbox, name="event_reminder", body_parameters=["Fri"])
        registered = await client.post(
            f"{sandbox.base_url}/_sandbox/templates",
            json={"name": "event_reminder", "language": "en_US", "body_params": 1},
        )
        after = await send(client, sandbox, name="event_reminder", body_parameters=["Fri"])
        listed = (await client.get(f"{sandbox.base_url}/_sandbox/templates")).json()
        invalid = await client.post(f"{sandbox.base_url}/_sandbox/templates", json={"name": "x"})

    assert before.json()["error"]["code"] == 132001
    assert registered.status_code == 201
    assert after.status_code == 200
    assert [(t["name"], t["body_params"], t["status"]) for t in listed] == [
        ("event_reminder", 1, "APPROVED")
    ]
    assert invalid.status_code == 400


async def test_user_preferences_stop_and_inbound_stop_webhooks(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario()) as sandbox,
    ):
        base = f"{sandbox.base_url}/_sandbox/events"
        stop = await client.post(
            f"{base}/user-preferences", json={"wa_id": "16505551234", "phone_number_id": "123"}
        )
        inbound = await client.post(
            f"{base}/inbound-text", json={"from": "16505551234", "phone_number_id": "123"}
        )
        await hooks.wait_for_posts(2)

    assert stop.status_code == inbound.status_code == 202
    changes = {
        change["field"]: change["value"]
        for post in hooks.posts
        for entry in post.json()["entry"]
        for change in entry["changes"]
    }
    [preference] = changes["user_preferences"]["user_preferences"]
    assert (preference["wa_id"], preference["value"]) == ("16505551234", "stop")
    assert preference["category"] == "marketing_messages"
    assert isinstance(preference["timestamp"], int)
    assert changes["user_preferences"]["metadata"]["phone_number_id"] == "123"
    [text] = changes["messages"]["messages"]
    assert (text["from"], text["type"], text["text"]) == ("16505551234", "text", {"body": "STOP"})
    assert text["id"].startswith("wamid.")
    assert changes["messages"]["contacts"][0]["wa_id"] == "16505551234"


async def test_user_id_only_stop_calls_and_echoes_on_command(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario()) as sandbox,
    ):
        base = f"{sandbox.base_url}/_sandbox/events"
        where = {"phone_number_id": "123"}
        replies = [
            await client.post(
                f"{base}/inbound-text", json={"from": "16505551234", "phone_shared": False} | where
            ),
            await client.post(f"{base}/call", json={"from": "16505551234"} | where),
            await client.post(f"{base}/echo", json={"to": "16505551234"} | where),
        ]
        await hooks.wait_for_posts(3)
        user_id = sandbox.service.user_id_for("16505551234")

    assert [reply.status_code for reply in replies] == [202, 202, 202]
    changes = {
        change["field"]: change["value"]
        for post in hooks.posts
        for entry in post.json()["entry"]
        for change in entry["changes"]
    }
    [text] = changes["messages"]["messages"]
    assert "from" not in text
    assert text["from_user_id"] == user_id
    assert "16505551234" not in json.dumps(changes["messages"])
    [call] = changes["calls"]["calls"]
    assert (call["event"], call["from"], call["from_user_id"]) == (
        "connect",
        "16505551234",
        user_id,
    )
    [echo] = changes["smb_message_echoes"]["message_echoes"]
    assert (echo["to"], echo["to_user_id"], echo["type"]) == ("16505551234", user_id, "text")


async def test_events_need_a_phone_number_id_from_somewhere(client: httpx.AsyncClient) -> None:
    async with serve_recorder() as hooks, serve(local_settings(callback_url=hooks.url)) as sandbox:
        response = await client.post(
            f"{sandbox.base_url}/_sandbox/events/user-preferences", json={"wa_id": "1"}
        )

    assert response.status_code == 404


async def test_template_paused_webhook_also_pauses_sending(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario()) as sandbox,
    ):
        paused = await client.post(
            f"{sandbox.base_url}/_sandbox/events/template-status",
            json={"name": "event_invitation", "language": "en_US", "event": "PAUSED"},
        )
        [post] = await hooks.wait_for_posts(1)
        blocked = await send(client, sandbox)
        missing = await client.post(
            f"{sandbox.base_url}/_sandbox/events/template-status",
            json={"name": "nope", "language": "en_US", "event": "PAUSED"},
        )

    assert paused.status_code == 202
    [entry] = post.json()["entry"]
    assert isinstance(entry["time"], int)
    [change] = entry["changes"]
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "PAUSED"
    assert change["value"]["message_template_name"] == "event_invitation"
    assert isinstance(change["value"]["message_template_id"], int)
    assert blocked.json()["error"]["code"] == 132015
    assert missing.status_code == 404


async def test_extra_status_for_an_accepted_message(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario()) as sandbox,
    ):
        wamid = (await send(client, sandbox, callback_data="msg-7")).json()["messages"][0]["id"]
        await hooks.wait_for_statuses(1)
        late = await client.post(
            f"{sandbox.base_url}/_sandbox/events/status",
            json={"wamid": wamid, "status": "failed", "error_code": 131050},
        )
        unknown = await client.post(
            f"{sandbox.base_url}/_sandbox/events/status",
            json={"wamid": "wamid.nope", "status": "read"},
        )
        sent, failed = await hooks.wait_for_statuses(2)

    assert late.status_code == 202
    assert unknown.status_code == 404
    assert (sent["status"], failed["status"]) == ("sent", "failed")
    assert failed["biz_opaque_callback_data"] == "msg-7"
    assert failed["errors"][0]["code"] == 131050


async def test_template_quality_and_category_webhooks_on_command(
    client: httpx.AsyncClient,
) -> None:
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario()) as sandbox,
    ):
        base = f"{sandbox.base_url}/_sandbox/events"
        quality = await client.post(
            f"{base}/template-quality",
            json={"name": "event_invitation", "language": "en_US", "score": "RED"},
        )
        await hooks.wait_for_posts(1)
        category = await client.post(
            f"{base}/template-category",
            json={"name": "event_invitation", "language": "en_US", "category": "UTILITY"},
        )
        posts = await hooks.wait_for_posts(2)
        listed = (await client.get(f"{sandbox.base_url}/_sandbox/templates")).json()
        bad = await client.post(
            f"{base}/template-quality",
            json={"name": "event_invitation", "language": "en_US", "score": "PURPLE"},
        )

    assert (quality.status_code, category.status_code) == (202, 202)
    changes = [post.json()["entry"][0]["changes"][0] for post in posts]
    assert [c["field"] for c in changes] == [
        "message_template_quality_update",
        "template_category_update",
    ]
    assert changes[0]["value"]["previous_quality_score"] == "UNKNOWN"
    assert changes[0]["value"]["new_quality_score"] == "RED"
    assert changes[1]["value"]["previous_category"] == "MARKETING"
    assert changes[1]["value"]["new_category"] == "UTILITY"
    assert (listed[0]["quality"], listed[0]["category"]) == ("RED", "UTILITY")
    assert bad.status_code == 400
