"""The send path under provider faults, with two real dispatch replicas against the sandbox.

Each test ends with the same checks (`assert_promises_kept`, once every webhook the sandbox
will post has been applied): the sandbox's ledger has nobody
twice and no one-second window over the cap (the sandbox's own count, at the moment each
request arrived), and in the database nothing is stuck, nothing ended ambiguous that the
provider never saw, and the run's counters equal its rows. Figures an operator would want are
printed (never asserted on timing)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import FAST_WEBHOOKS, DispatchStack, scenario
from tests.e2e.test_dispatch_crash import seed_bulk_world
from tests.integration.dispatch_support import World
from tests.integration.factories import Seeder


def assert_promises_kept(
    stack: DispatchStack, database_url: str, world: World, run_id: str, cap: int
) -> dict[str, Any]:
    """The checks every fault test ends with; returns figures for the report."""
    stack.settle_webhooks(database_url)
    ledger = stack.ledger()
    stats = stack.control("GET", "stats")
    per_recipient = Counter(entry["wa_id"] for entry in ledger)
    twice = [entry for entry in ledger if per_recipient[entry["wa_id"]] > 1]
    # nobody twice; on failure each entry names its message (biz_opaque_callback_data)
    assert [wa_id for wa_id, n in per_recipient.items() if n > 1] == [], twice
    assert stats["max_sends_in_any_second"] <= cap, stats["sends_per_second"]
    with Seeder(database_url) as seed, seed.conn.transaction():
        # one snapshot for the rows and their counts (late `read` webhooks may still arrive)
        seed.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = seed.rows(
            "SELECT phone_e164, state, rejection_reason FROM invite_message WHERE run_id = %s",
            run_id,
        )
        counted = dict(
            seed.rows(
                "SELECT state, sum(count)::int FROM invite_run_count WHERE run_id = %s"
                " GROUP BY state HAVING sum(count) <> 0",
                run_id,
            )
        )
        billable = seed.rows(
            "SELECT prefix, category, sum(count)::int FROM invite_run_billable"
            " WHERE run_id = %s GROUP BY 1, 2 HAVING sum(count) <> 0 ORDER BY 1, 2",
            run_id,
        )
        priced = seed.rows(
            "SELECT substr(phone_e164, 1, 5), pricing_category, count(*)::int FROM invite_message"
            " WHERE run_id = %s AND pricing_billable AND pricing_category IS NOT NULL"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            run_id,
        )
    assert counted == dict(Counter(state for _, state, _ in rows))
    assert billable == priced  # the cost estimate's projection, kept by triggers, too
    stuck = [row for row in rows if row[1] in ("queued", "sending")]
    assert stuck == []
    unknown = [phone for phone, state, reason in rows if reason == "outcome_unknown"]
    never_reached = [p for p in unknown if per_recipient[p.lstrip("+")] == 0]
    for phone, state, _ in rows:
        if state in ("sent", "delivered", "read"):
            assert per_recipient[phone.lstrip("+")] == 1, phone
    return {
        "sent": len(ledger),
        "outcome_unknown": len(unknown),
        "outcome_unknown_never_reached": len(never_reached),
        "busiest_second": stats["max_sends_in_any_second"],
        "cap": cap,
        "states": dict(Counter(state for _, state, _ in rows)),
    }


def test_after_a_provider_stall_no_second_goes_over_the_cap(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The provider answers after 1.5 s for a while: requests pile up behind the replicas'
    few connections. When it recovers they must not leave in a burst: each request leaves
    inside its own slot or not at all (back to queued, sent in a later slot)."""
    rate = 100
    settings = {
        "DISPATCH_RATE_PER_SECOND": str(rate),
        "DISPATCH_HTTP_CONNECTIONS": "30",
        "DISPATCH_PROVIDER_TIMEOUT_SECONDS": "10",
    }
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario(latency={"ms": 1500}))
    stack.start_dispatch("a", **settings)
    stack.start_dispatch("b", **settings)
    world = seed_bulk_world(database_url, 700)
    run_id = stack.precheck_and_start(world)
    time.sleep(5)  # stalled: every connection is busy, more requests wait for one
    stack.control("PATCH", "scenario", {"latency": {"ms": 0}})
    recovered = time.monotonic()
    stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED, timeout=60)
    figures = assert_promises_kept(stack, database_url, world, run_id, rate)
    assert figures["outcome_unknown"] == 0  # nothing here was ambiguous
    print(f"stall: {figures}, completed {time.monotonic() - recovered:.1f}s after recovery")


def wait_for_outage(
    stack: DispatchStack, world: World, run_id: str, timeout: float = 20
) -> pb.RunStatus:
    """Poll GetRunStatus until the run shows a provider outage."""
    deadline = time.monotonic() + timeout
    status = stack.status(world, run_id)
    while not status.run.provider_outage_reason:
        assert time.monotonic() < deadline, f"no outage shown: {status.run}"
        time.sleep(0.1)
        status = stack.status(world, run_id)
    return status


def wait_receipts_applied(
    database_url: str, before: float | None = None, timeout: float = 30
) -> float:
    """Seconds until no webhook receipt (received before `before`, wall clock) is pending."""
    began = time.monotonic()
    query = "SELECT count(*) FROM webhook_receipt WHERE state = 'pending'"
    if before is not None:
        query += f" AND received_at < to_timestamp({before})"
    with Seeder(database_url) as seed:
        while seed.rows(query)[0][0]:
            assert time.monotonic() - began < timeout, "receipts left unapplied"
            time.sleep(0.1)
    return time.monotonic() - began


def left_sent(database_url: str, run_id: str) -> int:
    """Messages still `sent` although the sandbox sends every one a `delivered` webhook."""
    with Seeder(database_url) as seed:
        return int(
            seed.rows(
                "SELECT count(*) FROM invite_message WHERE run_id = %s AND state = 'sent'", run_id
            )[0][0]
        )


@pytest.mark.slow
def test_a_provider_refusing_with_500s_pauses_the_sender_not_the_audience(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The provider answers HTTP 500 to everything for a while. After the threshold the
    sender is held (the run shows why and when the next probe goes), one probe per back-off
    step tests the provider, and sending resumes by itself: a 500 may have been accepted, so
    those few end outcome_unknown, but not the audience."""
    rate, threshold = 100, 10
    settings = {
        "DISPATCH_RATE_PER_SECOND": str(rate),
        "DISPATCH_OUTAGE_THRESHOLD": str(threshold),
        "DISPATCH_OUTAGE_PROBE_SECONDS": "0.5",
        "DISPATCH_OUTAGE_PROBE_CAP_SECONDS": "1",
        "DISPATCH_OUTCOME_UNKNOWN_SECONDS": "3",
        "DISPATCH_LEASE_SECONDS": "2",
        "DISPATCH_PROVIDER_TIMEOUT_SECONDS": "2",
        "DISPATCHER_RECONCILE_SECONDS": "0.5",
    }
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario())
    a = stack.start_dispatch("a", **settings)
    stack.start_dispatch("b", **settings)
    stack.start_webhook(a.env["DISPATCH_LISTEN"])
    world = seed_bulk_world(database_url, 800)
    run_id = stack.precheck_and_start(world)
    stack.wait_for_counts(world, run_id, lambda c: sum(c.values()) - c.get("queued", 0) > 100)
    failing = {"faults": [{"code": 131000, "http_status": 500}]}
    stack.control("PATCH", "scenario", failing)
    failing_since = time.monotonic()
    shown = wait_for_outage(stack, world, run_id)
    time.sleep(4)
    stack.control("PATCH", "scenario", {"faults": []})
    recovered = time.monotonic()
    stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED, timeout=60)
    applied_after = wait_receipts_applied(database_url)
    figures = assert_promises_kept(stack, database_url, world, run_id, rate)
    refused = stack.control("GET", "stats")["rejected_by_code"].get("131000", 0)
    print(
        f"provider 500s: {figures}; refused with 500 {refused};"
        f" outage shown {shown.run.provider_outage_reason!r}"
        f" {time.monotonic() - failing_since:.0f}s; completed"
        f" {time.monotonic() - recovered:.1f}s after recovery; receipts {applied_after:.1f}s"
    )
    assert "failures in a row" in shown.run.provider_outage_reason
    assert shown.run.HasField("next_probe_at")
    # each replica's threshold and the calls in flight when it tripped, plus the probes:
    # nowhere near the 400+ messages the slots of the outage would have taken
    assert refused <= 2 * threshold + 2 * 10 + 12, refused
    assert figures["outcome_unknown"] == refused  # only what was refused with a 5xx
    assert figures["outcome_unknown_never_reached"] == refused
    assert left_sent(database_url, run_id) == 0


@pytest.mark.slow
def test_the_ingestor_killed_and_the_dispatch_service_down_while_webhooks_arrive(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The ingestor is SIGKILLed mid-run and restarted (the sandbox redelivers what it
    refused); later the dispatch replica it forwards to is down for 5 s while webhooks keep
    arriving. Every status ends applied, promptly after each recovery."""
    rate = 100
    redelivery = {"initial_ms": 200, "multiplier": 2, "max_interval_s": 1}
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario(webhooks={**FAST_WEBHOOKS, "retry": redelivery}))
    a = stack.start_dispatch("a", DISPATCH_RATE_PER_SECOND=str(rate))
    stack.start_dispatch("b", DISPATCH_RATE_PER_SECOND=str(rate))
    webhook = stack.start_webhook(a.env["DISPATCH_LISTEN"])
    world = seed_bulk_world(database_url, 1000)
    run_id = stack.precheck_and_start(world)
    time.sleep(2)
    webhook.kill()
    time.sleep(2)
    webhook = stack.start_webhook(a.env["DISPATCH_LISTEN"])
    restarted = time.monotonic()
    ingestor_back = wait_receipts_applied(database_url, before=time.time())
    stack.dispatchers["a"].stop()
    time.sleep(5)
    stack.start_dispatch("a")
    dispatch_back = time.monotonic()
    receipts_after_dispatch = wait_receipts_applied(database_url, before=time.time())
    stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED, timeout=60)
    wait_receipts_applied(database_url)
    deadline = time.monotonic() + 20
    while left_sent(database_url, run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    figures = assert_promises_kept(stack, database_url, world, run_id, rate)
    print(
        f"ingestor kill + dispatch down: {figures}; receipts applied {ingestor_back:.1f}s after"
        f" the ingestor restarted ({time.monotonic() - restarted:.0f}s ago),"
        f" {receipts_after_dispatch:.1f}s after the dispatch service came back"
        f" ({time.monotonic() - dispatch_back:.0f}s ago); ingestor log lines"
        f" {len(webhook.log().splitlines())}"
    )
    assert left_sent(database_url, run_id) == 0
    assert figures["outcome_unknown"] == 0
