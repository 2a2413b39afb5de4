"""Status webhooks over real HTTP: signatures, lifecycle, ordering, batching, redelivery, hold."""

import asyncio
import hashlib
import hmac
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.scenario import Scenario
from sandbox.testing import (
    TEST_ACCESS_TOKEN,
    TEST_APP_SECRET,
    RunningSandbox,
    WebhookRecorder,
    local_settings,
    serve,
    serve_recorder,
    template_message,
)

AUTH = {"Authorization": f"Bearer {TEST_ACCESS_TOKEN}"}
PHONE_ID = "106540352242922"
FAST = {
    "sent": {"ms": 0},
    "delivered": {"ms": 40},
    "read": {"ms": 40},
    "failed": {"ms": 0},
    "delivered_share": 1,
    "read_share": 1,
    "read_without_delivered_share": 0,
    "batching": {"linger_ms": 0},
}


def scenario(faults: list[dict[str, Any]] | None = None, **webhooks: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "seed": 3,
            "templates": [{"name": "event_invitation", "language": "en_US", "body_params": 2}],
            "faults": faults or [],
            "webhooks": FAST | webhooks,
        }
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def send(
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    to: str,
    phone_number_id: str = PHONE_ID,
) -> str:
    response = await client.post(
        sandbox.send_url(phone_number_id),
        json=template_message(to, callback_data=f"cb-{to}"),
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    wamid: str = response.json()["messages"][0]["id"]
    return wamid


def arrivals(hooks: WebhookRecorder) -> dict[str, list[str]]:
    """Statuses per wamid in the order they arrived."""
    per_message: dict[str, list[str]] = {}
    for status in hooks.statuses():
        per_message.setdefault(status["id"], []).append(status["status"])
    return per_message


async def test_signed_lifecycle_with_metadata_from_the_send_url(
    client: httpx.AsyncClient,
) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(
                callback_url=hooks.url,
                display_phone_number="15551230000",
                waba_id="100000000000001",
                webhook_concurrency=1,  # one POST at a time: arrival order is due order
            ),
            scenario=scenario(),
        ) as sandbox,
    ):
        first = await send(client, sandbox, "16505550001", PHONE_ID)
        second = await send(client, sandbox, "16505550002", "222222222222222")
        await hooks.wait_for_statuses(6)

    for post in hooks.posts:
        header = post.headers["X-Hub-Signature-256"]
        expected = hmac.new(TEST_APP_SECRET.encode(), post.body, hashlib.sha256).hexdigest()
        assert header == f"sha256={expected}"
        assert re.fullmatch(r"sha256=[0-9a-f]{64}", header)
        payload = post.json()
        assert payload["object"] == "whatsapp_business_account"
        for entry in payload["entry"]:
            assert entry["id"] == "100000000000001"
            for change in entry["changes"]:
                assert change["field"] == "messages"
                value = change["value"]
                assert value["messaging_product"] == "whatsapp"
                expected_phone = {first: PHONE_ID, second: "222222222222222"}
                for status in value["statuses"]:
                    assert value["metadata"] == {
                        "display_phone_number": "15551230000",
                        "phone_number_id": expected_phone[status["id"]],
                    }
                # v26: the people named by sent/delivered/read, by phone and user id (§1.4).
                named = {c["wa_id"]: c["user_id"] for c in value["contacts"]}
                assert set(named) == {s["recipient_id"] for s in value["statuses"]}
                assert all(re.fullmatch(r"US\.\d{20}", u) for u in named.values())

    assert arrivals(hooks) == {
        first: ["sent", "delivered", "read"],
        second: ["sent", "delivered", "read"],
    }
    for status in hooks.statuses():
        recipient = "16505550001" if status["id"] == first else "16505550002"
        assert status["recipient_id"] == recipient
        assert status["biz_opaque_callback_data"] == f"cb-{recipient}"
        assert re.fullmatch(r"\d{10}", status["timestamp"])
        # The 2025 block on sent and on the first of delivered/read, without `billable`.
        assert ("pricing" in status) == (status["status"] in ("sent", "delivered"))
        if "pricing" in status:
            assert status["pricing"] == {
                "pricing_model": "PMP",
                "type": "regular",
                "category": "marketing",
            }
        assert "conversation" not in status


async def test_read_without_delivered(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(read_without_delivered_share=1),
        ) as sandbox,
    ):
        wamids = [await send(client, sandbox, f"1650555000{n}") for n in range(3)]
        await hooks.wait_for_statuses(6)
        await asyncio.sleep(0.1)  # nothing else may follow

    per_message = arrivals(hooks)
    assert {wamid: sorted(per_message[wamid]) for wamid in wamids} == {
        wamid: ["read", "sent"] for wamid in wamids
    }


async def test_duplicates_arrive_twice(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(duplicate_share=1, duplicate_delay={"ms": 10}, read_share=0),
        ) as sandbox,
    ):
        wamid = await send(client, sandbox, "16505550001")
        await hooks.wait_for_statuses(4)
        await asyncio.sleep(0.1)

    assert Counter(arrivals(hooks)[wamid]) == {"sent": 2, "delivered": 2}


async def test_reordered_statuses_arrive_out_of_order_with_true_timestamps(
    client: httpx.AsyncClient,
) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url, webhook_concurrency=1),
            scenario=scenario(reorder_share=1),
        ) as sandbox,
    ):
        wamids = [await send(client, sandbox, f"1650555000{n}") for n in range(4)]
        await hooks.wait_for_statuses(12)

    per_message = arrivals(hooks)
    assert all(sorted(per_message[w]) == ["delivered", "read", "sent"] for w in wamids)
    assert any(per_message[w] != ["sent", "delivered", "read"] for w in wamids)


async def test_due_statuses_are_batched_across_entries_and_changes(
    client: httpx.AsyncClient,
) -> None:
    batching = {"linger_ms": 300, "statuses_per_change": 2, "changes_per_entry": 2}
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(delivered_share=0, batching=batching),
        ) as sandbox,
    ):
        for n in range(3):
            await send(client, sandbox, f"1650555000{n}", PHONE_ID)
        await send(client, sandbox, "16505550009", "222222222222222")
        await hooks.wait_for_statuses(4)

    [post] = hooks.posts
    entries = post.json()["entry"]
    changes = [change for entry in entries for change in entry["changes"]]
    assert [len(entry["changes"]) for entry in entries] == [2, 1]
    assert [
        (c["value"]["metadata"]["phone_number_id"], len(c["value"]["statuses"])) for c in changes
    ] == [(PHONE_ID, 2), (PHONE_ID, 1), ("222222222222222", 1)]


async def test_async_failure_arrives_as_failed_with_errors(client: httpx.AsyncClient) -> None:
    faults = [{"code": 131026, "recipients": ["15550000001"]}]
    async with (
        serve_recorder() as hooks,
        serve(local_settings(callback_url=hooks.url), scenario=scenario(faults)) as sandbox,
    ):
        wamid = await send(client, sandbox, "15550000001")
        [failed] = await hooks.wait_for_statuses(1)
        await asyncio.sleep(0.1)

    assert len(hooks.statuses()) == 1
    assert failed["id"] == wamid
    assert failed["status"] == "failed"
    assert failed["biz_opaque_callback_data"] == "cb-15550000001"
    assert "pricing" not in failed
    assert failed["errors"] == [
        {
            "code": 131026,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }
    ]


async def test_non_200_is_redelivered_byte_for_byte(client: httpx.AsyncClient) -> None:
    retry = {"max_attempts": 5, "initial_ms": 20, "multiplier": 2}
    async with (
        serve_recorder(answers=[500, 204]) as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(delivered_share=0, retry=retry),
        ) as sandbox,
    ):
        await send(client, sandbox, "16505550001")
        posts = await hooks.wait_for_posts(3)
        await asyncio.sleep(0.2)
        counters = sandbox.service.webhooks.snapshot()

    assert len(posts) == 3
    assert len({(post.body, post.headers["X-Hub-Signature-256"]) for post in posts}) == 1
    assert counters["redeliveries"] == 2
    assert counters["posts_acknowledged"] == 1
    assert counters["events_acknowledged"] == 1


async def test_redelivery_is_bounded_in_attempts(client: httpx.AsyncClient) -> None:
    retry = {"max_attempts": 3, "initial_ms": 10, "multiplier": 1}
    async with (
        serve_recorder(answers=[500] * 10) as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(delivered_share=0, retry=retry),
        ) as sandbox,
    ):
        await send(client, sandbox, "16505550001")
        await hooks.wait_for_posts(3)
        await asyncio.sleep(0.2)
        counters = sandbox.service.webhooks.snapshot()

    assert hooks.attempts == 3
    assert counters["posts_dropped"] == 1
    assert counters["events_dropped"] == 1


async def test_redelivery_is_bounded_in_time_and_survives_connection_errors(
    client: httpx.AsyncClient,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/webhooks/whatsapp"
    retry = {"max_attempts": 50, "initial_ms": 50, "multiplier": 2, "max_elapsed_s": 0.3}
    async with serve(
        local_settings(callback_url=dead_url),
        scenario=scenario(delivered_share=0, retry=retry),
    ) as sandbox:
        await send(client, sandbox, "16505550001")
        await asyncio.sleep(0.6)
        counters = sandbox.service.webhooks.snapshot()

    # attempts at ~0, 0.05, 0.15 s; the next wait (0.2 s) would pass 0.3 s, so it stops
    assert counters["attempts_failed"] == 3
    assert counters["posts_dropped"] == 1


async def test_hold_then_flush_shuffled_duplicated_in_small_batches(
    client: httpx.AsyncClient,
) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(hold=True, read_share=0),
        ) as sandbox,
    ):
        wamids = [await send(client, sandbox, f"1650555000{n}") for n in range(4)]
        await asyncio.sleep(0.2)
        assert hooks.posts == []
        assert sandbox.service.webhooks.snapshot()["held"] == 8

        flushed = await client.post(
            f"{sandbox.base_url}/_sandbox/webhooks/flush",
            json={"shuffle": True, "duplicate_share": 1.0, "batch_size": 3},
        )

    assert flushed.json() == {"released": 16, "posts": 6, "acknowledged_posts": 6}
    assert all(len(post.statuses()) <= 3 for post in hooks.posts)
    received = Counter((s["id"], s["status"]) for s in hooks.statuses())
    assert received == {(w, status): 2 for w in wamids for status in ("sent", "delivered")}
    arrival = [(s["id"], s["status"]) for s in hooks.statuses()]
    copies_adjacent = all(arrival[i] == arrival[i + 1] for i in range(0, len(arrival), 2))
    assert not copies_adjacent  # shuffled after duplicating


async def test_flush_can_release_events_that_are_not_due_yet(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(sent={"ms": 60_000}, delivered_share=0),
        ) as sandbox,
    ):
        wamid = await send(client, sandbox, "16505550001")
        flushed = await client.post(
            f"{sandbox.base_url}/_sandbox/webhooks/flush", json={"include_scheduled": True}
        )

    assert flushed.json()["released"] == 1
    assert [(s["id"], s["status"]) for s in hooks.statuses()] == [(wamid, "sent")]


async def test_v23_shape_adds_conversation_and_pricing(client: httpx.AsyncClient) -> None:
    async with (
        serve_recorder() as hooks,
        serve(
            local_settings(callback_url=hooks.url, webhook_concurrency=1),
            scenario=scenario(shape="v23"),
        ) as sandbox,
    ):
        await send(client, sandbox, "16505550001")
        sent, delivered, read = await hooks.wait_for_statuses(3)

    assert set(sent["conversation"]) == {"id", "expiration_timestamp", "origin"}
    assert sent["conversation"]["origin"] == {"type": "marketing"}
    assert sent["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "marketing",
    }
    assert set(delivered["conversation"]) == {"id", "origin"}
    assert delivered["conversation"]["id"] == sent["conversation"]["id"]
    assert "pricing" in delivered
    assert "conversation" not in read
    assert "pricing" not in read


async def test_redelivery_keeps_going_like_meta_on_a_compressed_time_scale(
    client: httpx.AsyncClient,
) -> None:
    """By default there is no attempt limit: Meta keeps trying for 7 days with exponential
    back-off (capped per wait). On a 1/10,000 time scale, 11 refusals in a row (an hour and
    more of real back-off, far past the old 5 attempts) still end delivered."""
    retry = {"initial_ms": 500, "multiplier": 2, "max_interval_s": 600, "time_scale": 0.0001}
    async with (
        serve_recorder(answers=[503] * 11 + [200]) as hooks,
        serve(
            local_settings(callback_url=hooks.url),
            scenario=scenario(delivered_share=0, retry=retry),
        ) as sandbox,
    ):
        await send(client, sandbox, "16505550001")
        posts = await hooks.wait_for_posts(12)
        await asyncio.sleep(0.1)
        counters = sandbox.service.webhooks.snapshot()

    assert len(posts) == 12
    assert counters["redeliveries"] == 11
    assert counters["posts_acknowledged"] == 1
    assert counters["posts_dropped"] == 0


async def test_redelivery_gives_up_after_the_scaled_window() -> None:
    """The 7-day window, scaled: 1 s of waits at time_scale 1e-5 is 100,000 s (~28 h) real."""
    retry = {"initial_ms": 500, "multiplier": 2, "max_elapsed_s": 30_000, "time_scale": 0.00001}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/webhooks/whatsapp"
    async with (
        httpx.AsyncClient() as client,
        serve(
            local_settings(callback_url=dead_url),
            scenario=scenario(delivered_share=0, retry=retry),
        ) as sandbox,
    ):
        await send(client, sandbox, "16505550001")
        await asyncio.sleep(0.8)
        counters = sandbox.service.webhooks.snapshot()

    # waits 0.5, 1, 2, ... 2,048 s, then 3,600 s (the cap) each: 20 waits fit in 30,000 s
    # (fewer when the attempts themselves take a noticeable share of the scaled window)
    assert counters["posts_dropped"] == 1
    assert 15 <= counters["attempts_failed"] <= 21
