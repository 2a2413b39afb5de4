"""The send path under provider faults, with two real dispatch replicas against the sandbox.

Each test ends with the same checks (`assert_promises_kept`): the sandbox's ledger has nobody
twice and no one-second window over the cap (the sandbox's own count, at the moment each
request arrived), and in the database nothing is stuck, nothing ended ambiguous that the
provider never saw, and the run's counters equal its rows. Figures an operator would want are
printed (never asserted on timing)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from common.generated.invites.v1 import types_pb2 as types
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import DispatchStack, scenario
from tests.e2e.test_dispatch_crash import seed_bulk_world
from tests.integration.dispatch_support import World
from tests.integration.factories import Seeder


def assert_promises_kept(
    stack: DispatchStack, database_url: str, world: World, run_id: str, cap: int
) -> dict[str, Any]:
    """The checks every fault test ends with; returns figures for the report."""
    ledger = stack.ledger()
    stats = stack.control("GET", "stats")
    per_recipient = Counter(entry["wa_id"] for entry in ledger)
    assert [wa_id for wa_id, n in per_recipient.items() if n > 1] == []
    assert stats["max_sends_in_any_second"] <= cap, stats["sends_per_second"]
    with Seeder(database_url) as seed:
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
    assert counted == dict(Counter(state for _, state, _ in rows))
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
