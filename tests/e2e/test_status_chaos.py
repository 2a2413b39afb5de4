"""Chaos on the status path with real processes (`python -m dispatch_service`, `python -m
webhook_service`): a run's webhooks arrive shuffled, duplicated and batched, the dispatch
service is stopped and restarted in the middle, the ingestor is SIGKILLed and restarted, and
forged, tampered and unsigned POSTs are mixed in. Afterwards every message is in its expected
final state, no forged POST changed anything, and no receipt is left pending.

Bodies are signed here with an independent HMAC (tests/status_support.sign).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from common.vocabulary import MessageState
from dispatch_service.domain.lifecycle import Lifecycle, ProviderError, ProviderStatus, replay
from tests.e2e.conftest import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    ServiceProcess,
    StartService,
    wait_for_http,
    wait_for_serving,
    wait_until,
)
from tests.status_support import change, encode, envelope, meta_error, seed_run, sign, status_item

SEED_SENT_AT = datetime(2030, 1, 1, tzinfo=UTC)
INGESTOR_TUNING = {
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "0.3",
    "WEBHOOK_SWEEP_MIN_AGE_SECONDS": "0.5",
    "WEBHOOK_FORWARD_ATTEMPTS": "2",
    "WEBHOOK_FORWARD_BACKOFF_SECONDS": "0.05",
    "WEBHOOK_FORWARD_DEADLINE_SECONDS": "3",
}


def history(rng: random.Random, base: int) -> list[tuple[str, int]]:
    """A consistent (order-independent) history of (status, unix time)."""
    t = sorted(rng.sample(range(base, base + 3_000), 3))
    ending = rng.choice(["sent", "delivered", "read", "read_direct", "failed", "failed_late"])
    statuses = [("sent", t[0])]
    if ending in ("delivered", "read", "failed_late"):
        statuses.append(("delivered", t[1]))
    if ending.startswith("read"):
        statuses.append(("read", t[2]))
    if ending.startswith("failed"):
        statuses.append(("failed", t[2]))
    return statuses


def expected_after(statuses: list[tuple[str, int]]) -> Lifecycle:
    reports = [
        ProviderStatus(
            s,
            datetime.fromtimestamp(t, UTC),
            (ProviderError(131026, "Message undeliverable", "details of 131026"),)
            if s == "failed"
            else (),
        )
        for s, t in statuses
    ]
    final, _ = replay(Lifecycle(MessageState.SENT, sent_at=SEED_SENT_AT), reports)
    return final


def pack(rng: random.Random, items: list[dict[str, Any]]) -> list[bytes]:
    """Bodies of 1-8 statuses each, spread over one or two entries and several changes."""
    bodies = []
    while items:
        size = rng.randint(1, 8)
        chunk, items = items[:size], items[size:]
        parts = [chunk[i : i + 3] for i in range(0, len(chunk), 3)]
        changes = [change({"statuses": part}, sender=PHONE_NUMBER_ID) for part in parts]
        bodies.append(encode(envelope(changes, entries=rng.randint(1, 2))))
    return bodies


def post(url: str, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code


def query(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, list(params)).fetchall()


def start_ingestor(start_service: StartService) -> ServiceProcess:
    service = start_service("webhook", "webhook_service", **INGESTOR_TUNING)
    wait_for_http(service, f"http://{service.env['WEBHOOK_LISTEN']}/healthz")
    return service


def start_dispatch(start_service: StartService) -> ServiceProcess:
    service = start_service("dispatch", "dispatch_service", DISPATCHER_ENABLED="false")
    wait_for_serving(service)
    return service


def test_webhook_chaos_ends_in_the_expected_states(
    start_service: StartService, database_url: str
) -> None:
    rng = random.Random(7)
    run = seed_run(database_url, 30, sender=PHONE_NUMBER_ID)
    histories = [history(rng, 1_900_000_000 + 10_000 * n) for n in range(len(run.wamids))]
    expected = {mid: expected_after(h) for mid, h in zip(run.message_ids, histories, strict=True)}
    items = [
        status_item(
            wamid or "",
            s,
            t,
            recipient_id=phone.lstrip("+"),
            errors=[meta_error(131026)] if s == "failed" else (),
        )
        for wamid, phone, h in zip(run.wamids, run.phones, histories, strict=True)
        for s, t in h
    ]
    items += rng.choices(items, k=len(items) // 3)  # Meta delivers some statuses twice
    rng.shuffle(items)
    bodies = pack(rng, items)
    bodies.insert(len(bodies) // 2, bodies[0])  # an identical redelivery of a whole POST
    third_size = len(bodies) // 3
    first, second = bodies[:third_size], bodies[third_size : 2 * third_size]
    third = bodies[2 * third_size :]

    # A message whose true history stops short of read, and what a forger would claim.
    victim = next(n for n, h in enumerate(histories) if h[-1][0] in ("sent", "delivered"))
    claim = status_item(run.wamids[victim] or "", "read", 2_000_000_000)
    forged = encode(envelope([change({"statuses": [claim]}, sender=PHONE_NUMBER_ID)]))

    dispatch = start_dispatch(start_service)
    ingestor = start_ingestor(start_service)
    url = f"http://{ingestor.env['WEBHOOK_LISTEN']}/webhooks/whatsapp"
    assert [post(url, b, sign(b, APP_SECRET)) for b in first] == [200] * len(first)

    dispatch.stop()  # SIGTERM: the dispatch service is down for the second third
    assert [post(url, b, sign(b, APP_SECRET)) for b in second] == [200] * len(second)
    assert post(url, forged, sign(forged, "not-the-app-secret")) == 403
    assert post(url, forged, None) == 401
    assert post(url, forged, sign(forged, APP_SECRET)[:-1]) == 401
    tampered = second[0].replace(b'"status":"', b'"status":"read","was":"', 1)
    assert post(url, tampered, sign(second[0], APP_SECRET)) == 403
    pending = query(database_url, "SELECT count(*) FROM webhook_receipt WHERE state = 'pending'")
    assert pending[0][0] > 0  # stored while nothing could apply them

    start_dispatch(start_service)
    assert [post(url, b, sign(b, APP_SECRET)) for b in third] == [200] * len(third)
    ingestor.kill()  # a crash: whatever it had in memory is only in the database now
    ingestor = start_ingestor(start_service)

    def settled() -> bool:
        states = query(database_url, "SELECT DISTINCT state FROM webhook_receipt")
        return states == [("applied",)]

    wait_until(settled, 45, "every receipt to be applied")
    rows = query(
        database_url,
        "SELECT id, state, sent_at, delivered_at, read_at, failed_at, error_code"
        " FROM invite_message WHERE run_id = %s",
        run.run_id,
    )
    found = {r[0]: r[1:] for r in rows}
    assert found == {
        mid: (
            m.state.value,
            m.sent_at,
            m.delivered_at,
            m.read_at,
            m.failed_at,
            m.error.code if m.error else None,
        )
        for mid, m in expected.items()
    }
    assert found[run.message_ids[victim]][0] != "read"  # the forgery changed nothing
    distinct_bodies = len(set(bodies))
    assert query(database_url, "SELECT count(*) FROM webhook_receipt") == [(distinct_bodies,)]
    forged_events = query(
        database_url,
        "SELECT count(*) FROM status_event WHERE provider_timestamp >= to_timestamp(2000000000)",
    )
    assert forged_events == [(0,)]
