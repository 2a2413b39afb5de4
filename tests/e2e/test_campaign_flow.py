"""Campaign control end to end as real processes: a run scheduled a few seconds ahead starts by
itself on time, and `invites resend RUN --failed` sends only to the recipient it failed for
(the sandbox's ledger is the truth about what was sent)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.e2e.conftest import BACKEND_TOKEN, StartService
from tests.e2e.dispatch_stack import DispatchStack, scenario
from tests.integration.dispatch_support import seed_world

PHONES = [f"+1415555{n:04d}" for n in range(4)]
LEAD_SECONDS = 3.0


def invites(
    service_env: dict[str, str], actor: object, *args: str
) -> subprocess.CompletedProcess[str]:
    """The real `invites` CLI against a dispatch process; fails the test on a non-zero exit."""
    env = {
        **service_env,
        "INVITES_TARGET": service_env["DISPATCH_LISTEN"],
        "INVITES_TOKEN": BACKEND_TOKEN,
        "INVITES_ACTOR": str(actor),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_documented_cli_commands_schedule_configure_and_cancel(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario())
    dispatch = stack.start_dispatch("a")
    world = seed_world(database_url, PHONES)
    env, actor = dispatch.env, world.parent_admin

    limits = invites(env, actor, "limits", "--messaging-limit", "2000", "--window", "09:00-21:00")
    assert "messaging limit: 2000 unique recipients per 24 h" in limits.stdout
    assert "quiet hours: 09:00-21:00" in limits.stdout
    assert "quiet hours: none" in invites(env, actor, "limits", "--window", "none").stdout

    precheck = invites(env, actor, "precheck", str(world.event_id), str(world.template_id))
    assert "messaging limit 2000/24 h: 4 can go now" in precheck.stdout
    sent = invites(
        env,
        actor,
        "send",
        str(world.event_id),
        str(world.template_id),
        "--at",
        "+1h",
        "--deadline",
        "+3h",
        "--window",
        "10:00-20:00",
        "--yes",
    )
    line = next(x for x in sent.stdout.splitlines() if "scheduled for" in x)
    run_id = line.split()[1]
    status = invites(env, actor, "status", run_id).stdout
    for expected in ("scheduled", "send at", "deadline", "send window", "10:00-20:00"):
        assert expected in status
    assert "cancelled" in invites(env, actor, "cancel", run_id).stdout
    assert stack.ledger() == []


def test_a_scheduled_run_starts_by_itself_at_its_time(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario())
    stack.start_dispatch("a", DISPATCHER_RECONCILE_SECONDS="0.2")
    world = seed_world(database_url, PHONES)
    send_at = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
    stamp = Timestamp()
    stamp.FromDatetime(send_at)
    channel, stub = stack.stub()
    with channel:
        precheck = stub.PrecheckSend(
            pb.PrecheckSendRequest(
                event_id=str(world.event_id), template_id=str(world.template_id)
            ),
            metadata=stack.md(world.admin),
            timeout=30,
        )
        started = stub.StartRun(
            pb.StartRunRequest(
                precheck_id=precheck.precheck_id, idempotency_key="scheduled", send_at=stamp
            ),
            metadata=stack.md(world.parent_admin),
            timeout=30,
        )
    assert started.run.state == types.RUN_STATE_SCHEDULED
    assert started.run.send_at.seconds == stamp.seconds
    assert stack.ledger() == []  # nothing before its time

    stack.wait_for_run(world, started.run.run_id, types.RUN_STATE_COMPLETED, timeout=60)
    ledger = stack.ledger()
    assert sorted(e["wa_id"] for e in ledger) == sorted(p.lstrip("+") for p in PHONES)
    first = min(e["accepted_at"] for e in ledger)
    assert first >= send_at.timestamp()  # never early
    print(f"scheduled run: first send {first - send_at.timestamp():.2f} s after send_at")


def test_resend_failed_sends_only_to_the_recipient_it_failed_for(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    failing = PHONES[1]
    stack = DispatchStack(start_service, stack_env, tmp_path)
    # Transient for every attempt of the first run (3), accepted afterwards.
    stack.start_sandbox(scenario(faults=[{"code": 131057, "recipients": [failing], "times": 3}]))
    dispatch = stack.start_dispatch(
        "a",
        DISPATCH_MAX_ATTEMPTS="3",
        DISPATCH_BACKOFF_BASE_SECONDS="0.05",
        DISPATCH_BACKOFF_CAP_SECONDS="0.1",
        DISPATCHER_RECONCILE_SECONDS="0.2",
    )
    world = seed_world(database_url, PHONES)
    run_id = stack.precheck_and_start(world)
    status = stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED)
    assert [(r.reason, r.count) for r in status.failed_by_reason] == [
        (types.REJECTION_REASON_RETRIES_EXHAUSTED, 1)
    ]

    done = invites(dispatch.env, world.parent_admin, "resend", run_id, "--failed", "--yes")
    assert "1 eligible" in done.stdout
    line = next(x for x in done.stdout.splitlines() if "resending run" in x)
    new_run = line.split()[1]
    child = stack.wait_for_run(world, new_run, types.RUN_STATE_COMPLETED)
    assert child.run.parent_run_id == run_id
    assert child.total_count == 1

    deadline = time.monotonic() + 10
    while len(stack.ledger()) < len(PHONES) and time.monotonic() < deadline:
        time.sleep(0.1)
    sent = Counter(e["wa_id"] for e in stack.ledger())
    assert sent == Counter(p.lstrip("+") for p in PHONES)  # everyone once, nobody twice
