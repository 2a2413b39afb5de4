"""The send path end to end as real processes: sandbox (Meta), dispatch service, ingestor.

A run is prechecked, started and watched through the API; the sandbox's ledger is the truth
about what was sent; its signed webhooks come back through the ingestor and ApplyStatus."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import DispatchStack, scenario
from tests.integration.dispatch_support import seed_world
from tests.integration.factories import Seeder

PHONES = [f"+1415555{n:04d}" for n in range(12)]


def digits(phone: str) -> str:
    return phone.lstrip("+")


def test_a_run_is_sent_watched_and_its_statuses_come_back(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario(latency={"ms": 10, "jitter_ms": 10}))
    dispatch = stack.start_dispatch("a", DISPATCH_RATE_PER_SECOND="100")
    stack.start_webhook(dispatch.env["DISPATCH_LISTEN"])
    world = seed_world(database_url, [*PHONES, None])
    run_id = stack.precheck_and_start(world)

    channel, stub = stack.stub()
    with channel:
        updates = [
            u.status
            for u in stub.WatchRun(
                pb.WatchRunRequest(run_id=run_id), metadata=stack.md(world.viewer), timeout=60
            )
        ]
    assert updates[-1].run.state == types.RUN_STATE_COMPLETED
    assert updates[-1].progress == 1.0
    ledger = stack.ledger()
    assert sorted(e["wa_id"] for e in ledger) == sorted(map(digits, PHONES))
    assert all(e["parameters"][1] == "Sat 1 Jun 2030, 17:30" for e in ledger)

    stack.wait_for_counts(
        world, run_id, lambda c: c.get("delivered", 0) + c.get("read", 0) == len(PHONES)
    )
    with Seeder(database_url) as seed:
        rows = seed.rows(
            "SELECT provider_message_id, id::text FROM invite_message WHERE phone_e164 IS NOT NULL"
        )
    by_wamid = {e["wamid"]: e["biz_opaque_callback_data"] for e in ledger}
    assert {wamid: message for wamid, message in rows} == by_wamid


def test_transient_terminal_ambiguous_and_halt_then_resume(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    flaky, rejected, dropped = PHONES[0], PHONES[1], PHONES[2]
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(
        scenario(
            faults=[
                {"code": 131057, "recipients": [flaky], "times": 2},  # HTTP 400: safe to retry
                {"code": 131051, "recipients": [rejected]},
                {"ambiguous": "drop", "recipients": [dropped]},
            ],
            account={"error_code": 190, "after_sends": 6},
        )
    )
    dispatch = stack.start_dispatch(
        "a",
        DISPATCH_RATE_PER_SECOND="50",
        DISPATCH_BACKOFF_BASE_SECONDS="0.1",
        DISPATCH_BACKOFF_CAP_SECONDS="0.2",
        DISPATCHER_CONCURRENCY="4",
        DISPATCHER_CLAIM_BATCH_SIZE="2",
    )
    stack.start_webhook(dispatch.env["DISPATCH_LISTEN"])
    world = seed_world(database_url, PHONES)
    run_id = stack.precheck_and_start(world)

    paused = stack.wait_for_run(world, run_id, types.RUN_STATE_PAUSED)
    assert "190" in paused.run.pause_reason
    sent_before_pause = len(stack.ledger())
    assert sent_before_pause == 6

    stack.control("PATCH", "scenario", {"account": {"error_code": None}})
    channel, stub = stack.stub()
    with channel:
        resumed = stub.ResumeRun(
            pb.ResumeRunRequest(run_id=run_id), metadata=stack.md(world.parent_admin), timeout=10
        )
    assert resumed.run.state == types.RUN_STATE_DISPATCHING
    status = stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED)

    ledger = stack.ledger()
    per_recipient: dict[str, int] = {}
    for entry in ledger:
        per_recipient[entry["wa_id"]] = per_recipient.get(entry["wa_id"], 0) + 1
    assert set(per_recipient.values()) == {1}  # nobody twice, the dropped reply included
    assert digits(rejected) not in per_recipient
    assert len(per_recipient) == len(PHONES) - 1
    assert [(c.error_code, c.count) for c in status.failed_by_error_code] == [(131051, 1)]
    with Seeder(database_url) as seed:
        rows = dict(
            seed.rows("SELECT phone_e164, attempt_count FROM invite_message")  # phone -> calls
        )
        states = dict(seed.rows("SELECT phone_e164, state FROM invite_message"))
    assert rows[flaky] >= 3
    assert states[flaky] in ("sent", "delivered", "read")
    assert states[rejected] == "failed"
    assert rows[dropped] == 1  # ambiguous: never sent again ...
    assert states[dropped] in ("sent", "delivered", "read")  # ... the webhook settled it


def test_another_workspace_cannot_see_or_touch_the_run(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario())
    stack.start_dispatch("a", DISPATCHER_ENABLED="false")
    world, other = seed_world(database_url, PHONES[:2]), seed_world(database_url, PHONES[2:3])
    run_id = stack.precheck_and_start(world)
    channel, stub = stack.stub()
    with channel:
        md = stack.md(other.parent_admin)
        with pytest.raises(grpc.RpcError) as status_error:
            stub.GetRunStatus(pb.GetRunStatusRequest(run_id=run_id), metadata=md, timeout=10)
        with pytest.raises(grpc.RpcError) as cancel_error:
            stub.CancelRun(pb.CancelRunRequest(run_id=run_id), metadata=md, timeout=10)
    for caught in (status_error, cancel_error):
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
