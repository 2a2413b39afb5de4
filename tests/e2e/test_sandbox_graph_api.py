"""The Graph send route over real HTTP: shapes, auth, scripted errors, ambiguity, the ledger."""

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.scenario import Scenario
from sandbox.testing import (
    TEST_ACCESS_TOKEN,
    local_settings,
    serve,
    serve_recorder,
    template_message,
)

AUTH = {"Authorization": f"Bearer {TEST_ACCESS_TOKEN}"}
TEMPLATE = {"name": "event_invitation", "language": "en_US", "body_params": 2}


def scenario(**fields: Any) -> Scenario:
    return Scenario.model_validate({"seed": 1, "templates": [TEMPLATE], **fields})


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


def assert_graph_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """A Cloud API error: ``(#code) title`` with ``error_data.details`` (WCA §2.1)."""
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["type"] == "OAuthException"
    assert error["code"] == code
    assert re.fullmatch(rf"\(#{code}\) \S.*", error["message"])
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]
    assert re.fullmatch(r"A[A-Za-z0-9_-]{22}", error["fbtrace_id"])
    return error


def assert_graph_level_error(
    response: httpx.Response,
    status: int,
    code: int,
    *,
    subcode: int | None = None,
    error_type: str = "OAuthException",
) -> dict[str, Any]:
    """A Graph-level error (190, an unknown object): plain message, no ``(#code)`` prefix, no
    ``error_data``, an ``error_subcode`` when Meta sends one."""
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    keys = ["message", "type", "code", *(["error_subcode"] if subcode else []), "fbtrace_id"]
    assert list(error) == keys
    assert (error["type"], error["code"], error.get("error_subcode")) == (error_type, code, subcode)
    assert not error["message"].startswith("(#")
    assert re.fullmatch(r"A[A-Za-z0-9_-]{22}", error["fbtrace_id"])
    return error


async def test_accepted_send_has_metas_shape_and_lands_in_the_ledger(
    client: httpx.AsyncClient,
) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        response = await client.post(
            sandbox.send_url(),
            json=template_message("+1 650-555-1234", callback_data="invitation:1"),
            headers=AUTH,
        )

        assert response.status_code == 200
        body = response.json()
        wamid = body["messages"][0]["id"]
        assert body == {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+1 650-555-1234", "wa_id": "16505551234"}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }
        assert re.fullmatch(r"wamid\.[A-Za-z0-9+/=]{40,}", wamid)

        ledger = (await client.get(f"{sandbox.base_url}/_sandbox/ledger")).json()
        assert ledger["total"] == 1
        entry = ledger["entries"][0]
        assert {k: entry[k] for k in ("wamid", "phone_number_id", "wa_id", "template")} == {
            "wamid": wamid,
            "phone_number_id": "106540352242922",
            "wa_id": "16505551234",
            "template": "event_invitation",
        }
        assert entry["parameters"] == ["Jane", "Sat 12 Oct, 19:00"]
        assert entry["biz_opaque_callback_data"] == "invitation:1"
        assert entry["language"] == "en_US"


async def test_wa_id_can_differ_from_the_number_sent_to(client: httpx.AsyncClient) -> None:
    mapped = scenario(wa_ids={"+54 9 11 2345 6789": "5411123456789"})
    async with serve(local_settings(), scenario=mapped) as sandbox:
        response = await client.post(
            sandbox.send_url(), json=template_message("+5491123456789"), headers=AUTH
        )

        assert response.json()["contacts"] == [
            {"input": "+5491123456789", "wa_id": "5411123456789"}
        ]
        assert sandbox.service.ledger.per_recipient == {"5411123456789": 1}


async def test_every_send_gets_a_fresh_wamid(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        replies = await asyncio.gather(
            *(
                client.post(sandbox.send_url(), json=template_message(), headers=AUTH)
                for _ in range(20)
            )
        )

    assert len({reply.json()["messages"][0]["id"] for reply in replies}) == 20


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TEST_ACCESS_TOKEN}"}],
)
async def test_bad_token_is_190_with_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        response = await client.post(sandbox.send_url(), json=template_message(), headers=headers)

        error = assert_graph_level_error(response, 401, 190)
        assert error["message"] in (
            "An access token is required to request this resource.",
            "Invalid OAuth access token - Cannot parse access token",
        )
        assert sandbox.service.ledger.entries == []


async def test_malformed_json_is_100(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        response = await client.post(
            sandbox.send_url(),
            content=b'{"messaging_product": "whatsapp", ',
            headers=AUTH | {"Content-Type": "application/json"},
        )

    assert_graph_error(response, 400, 100)


async def test_wrong_parameter_count_is_132000_and_unknown_language_132001(
    client: httpx.AsyncClient,
) -> None:
    async with serve(local_settings(), scenario=scenario()) as sandbox:
        too_few = template_message(body_parameters=())
        count = await client.post(sandbox.send_url(), json=too_few, headers=AUTH)
        language = await client.post(
            sandbox.send_url(), json=template_message(language="de"), headers=AUTH
        )

        error = assert_graph_error(count, 400, 132000)
        assert error["error_data"]["details"] == (
            "body: number of localizable_params (0) does not match "
            "the expected number of params (2)"
        )
        assert_graph_error(language, 400, 132001)
        assert sandbox.service.ledger.entries == []


async def test_only_the_configured_phone_number_id_is_accepted(client: httpx.AsyncClient) -> None:
    async with serve(
        local_settings(phone_number_id="106540352242922"), scenario=scenario()
    ) as sandbox:
        other = await client.post(sandbox.send_url("999"), json=template_message(), headers=AUTH)
        ours = await client.post(sandbox.send_url(), json=template_message(), headers=AUTH)

    error = assert_graph_level_error(other, 400, 100, subcode=33, error_type="GraphMethodException")
    assert error["message"].startswith("Unsupported post request. Object with ID '999'")
    assert ours.status_code == 200


async def test_rate_cap_answers_130429_above_n_per_second(client: httpx.AsyncClient) -> None:
    async with serve(
        local_settings(), scenario=scenario(throughput={"max_per_second": 5})
    ) as sandbox:
        replies = await asyncio.gather(
            *(
                client.post(sandbox.send_url(), json=template_message(), headers=AUTH)
                for _ in range(12)
            )
        )
        stats = (await client.get(f"{sandbox.base_url}/_sandbox/stats")).json()

    assert sorted(reply.status_code for reply in replies) == [200] * 5 + [400] * 7
    for reply in replies:
        if reply.status_code == 400:
            assert_graph_error(reply, 400, 130429)
    assert stats["accepted"] == 5
    assert stats["max_sends_in_any_second"] == 5
    assert stats["rejected_by_code"] == {"130429": 7}


async def test_transient_errors_for_a_chosen_recipient_then_success(
    client: httpx.AsyncClient,
) -> None:
    flaky = scenario(faults=[{"code": 131000, "recipients": ["15550000004"], "times": 2}])
    async with serve(local_settings(), scenario=flaky) as sandbox:
        statuses = [
            (
                await client.post(
                    sandbox.send_url(), json=template_message("15550000004"), headers=AUTH
                )
            )
            for _ in range(3)
        ]
        other = await client.post(sandbox.send_url(), json=template_message(), headers=AUTH)

        assert_graph_error(statuses[0], 500, 131000)
        assert_graph_error(statuses[1], 500, 131000)
        assert statuses[2].status_code == 200
        assert other.status_code == 200
        assert sandbox.service.ledger.per_recipient == {"15550000004": 1, "16505551234": 1}


async def test_sync_terminal_error_for_opted_out_recipient_is_not_recorded(
    client: httpx.AsyncClient,
) -> None:
    opted_out = scenario(faults=[{"code": 131050, "recipients": ["15550000002"]}])
    async with serve(local_settings(), scenario=opted_out) as sandbox:
        response = await client.post(
            sandbox.send_url(), json=template_message("15550000002"), headers=AUTH
        )

        assert_graph_error(response, 400, 131050)
        assert sandbox.service.ledger.entries == []


async def test_dropped_connection_still_records_the_send_and_sends_webhooks(
    client: httpx.AsyncClient,
) -> None:
    dropped = scenario(
        faults=[{"ambiguous": "drop", "recipients": ["15550000005"]}],
        webhooks={"sent": {"ms": 0}, "delivered_share": 0, "batching": {"linger_ms": 0}},
    )
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=dropped) as sandbox,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(
                sandbox.send_url(),
                json=template_message("15550000005", callback_data="msg-42"),
                headers=AUTH,
            )

        [entry] = sandbox.service.ledger.entries
        assert (entry.wa_id, entry.reply, entry.callback_data) == ("15550000005", "drop", "msg-42")
        [sent] = await hooks.wait_for_statuses(1)
        assert (sent["id"], sent["status"]) == (entry.wamid, "sent")
        assert sent["biz_opaque_callback_data"] == "msg-42"


async def test_reply_delayed_past_client_timeout_is_still_recorded() -> None:
    slow = scenario(faults=[{"ambiguous": "delay", "delay_ms": 600}])
    async with serve(local_settings(), scenario=slow) as sandbox:
        async with httpx.AsyncClient(timeout=0.15) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(sandbox.send_url(), json=template_message(), headers=AUTH)
        async with httpx.AsyncClient(timeout=3.0) as patient:
            late = await patient.post(sandbox.send_url(), json=template_message(), headers=AUTH)

        assert late.status_code == 200
        assert [entry.reply for entry in sandbox.service.ledger.entries] == ["delay", "delay"]


async def test_server_error_ambiguity_records_the_send_but_answers_500(
    client: httpx.AsyncClient,
) -> None:
    async with serve(
        local_settings(), scenario=scenario(faults=[{"ambiguous": "server_error"}])
    ) as sb:
        response = await client.post(sb.send_url(), json=template_message(), headers=AUTH)

        assert_graph_error(response, 500, 131000)
        assert [entry.reply for entry in sb.service.ledger.entries] == ["server_error"]


async def test_latency_is_applied_before_the_reply(client: httpx.AsyncClient) -> None:
    async with serve(local_settings(), scenario=scenario(latency={"ms": 300})) as sandbox:
        started = asyncio.get_running_loop().time()
        response = await client.post(sandbox.send_url(), json=template_message(), headers=AUTH)
        elapsed = asyncio.get_running_loop().time() - started

    assert response.status_code == 200
    assert elapsed >= 0.3


async def test_account_error_after_n_sends(client: httpx.AsyncClient) -> None:
    expiring = scenario(account={"error_code": 190, "after_sends": 2})
    async with serve(local_settings(), scenario=expiring) as sandbox:
        replies = [
            await client.post(sandbox.send_url(), json=template_message(), headers=AUTH)
            for _ in range(3)
        ]

    assert [reply.status_code for reply in replies] == [200, 200, 401]
    error = assert_graph_level_error(replies[2], 401, 190, subcode=463)
    assert error["message"].startswith("Error validating access token: Session has expired on ")
    # Byte for byte as Meta writes it: compact, keys in Meta's order.
    assert replies[2].content == (
        b'{"error":{"message":"' + error["message"].encode() + b'","type":"OAuthException",'
        b'"code":190,"error_subcode":463,"fbtrace_id":"' + error["fbtrace_id"].encode() + b'"}}'
    )


async def test_the_template_list_is_paged_as_meta_pages_it(client: httpx.AsyncClient) -> None:
    templates = [
        {"name": f"invite_{n}", "language": "en_US", "body_params": n % 3} for n in range(5)
    ]
    async with serve(
        local_settings(), scenario=Scenario.model_validate({"templates": templates})
    ) as sandbox:
        url: str | None = f"{sandbox.base_url}/v21.0/102290129340398/message_templates?limit=2"
        pages: list[dict[str, Any]] = []
        while url is not None and len(pages) < 10:
            response = await client.get(url, headers=AUTH)
            assert response.status_code == 200
            pages.append(response.json())
            url = pages[-1].get("paging", {}).get("next")
        wrong_waba = await client.get(
            f"{sandbox.base_url}/v21.0/999/message_templates", headers=AUTH
        )
        no_token = await client.get(f"{sandbox.base_url}/v21.0/102290129340398/message_templates")
        bad_cursor = await client.get(
            f"{sandbox.base_url}/v21.0/102290129340398/message_templates?after=zzz", headers=AUTH
        )

    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    assert "next" not in pages[-1]["paging"]
    assert all(set(p["paging"]["cursors"]) == {"before", "after"} for p in pages)
    items = [item for page in pages for item in page["data"]]
    assert [i["name"] for i in items] == [f"invite_{n}" for n in range(5)]
    assert isinstance(items[0]["id"], str)
    assert items[2]["components"] == [{"type": "BODY", "text": "You are invited. {{1}} {{2}}"}]
    assert items[0]["parameter_format"] == "POSITIONAL"
    assert items[0]["quality_score"] == {"score": "UNKNOWN"}
    for refused in (wrong_waba, bad_cursor):
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == 100
    assert_graph_level_error(no_token, 401, 190)
