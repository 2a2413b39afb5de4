"""The send path for a Twilio workspace as real processes: the sandbox playing Twilio, dispatch
replicas and the ingestor. The same checks as for Meta (test_dispatch_flow, test_dispatch_crash):
precheck, run, statuses back through POST /webhooks/twilio and ApplyStatus, and nobody sent
twice per the sandbox's ledger when a replica is SIGKILLed mid-run."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from sandbox.twilio import content_sid
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import FAST_WEBHOOKS, TEMPLATE, DispatchStack, scenario
from tests.e2e.test_dispatch_crash import replica_settings, seed_bulk_world
from tests.integration.dispatch_support import World, seed_world
from tests.integration.factories import Seeder

ACCOUNT = "AC" + "0123456789abcdef" * 2
SENDER = "whatsapp:+14155550100"
AUTH_TOKEN = "twilio-e2e-auth-token-1"
PHONES = [f"+1415666{n:04d}" for n in range(10)]


def twilio_stack(
    start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> DispatchStack:
    callback = f"http://{stack_env['WEBHOOK_LISTEN']}/webhooks/twilio"
    env = {
        **stack_env,
        "TWILIO_AUTH_TOKEN": f"{AUTH_TOKEN},a-second-rotation-token",
        "TWILIO_API_BASE_URL": f"http://{stack_env['SANDBOX_LISTEN']}",
        "TWILIO_STATUS_CALLBACK_URL": callback,
        "TWILIO_WEBHOOK_URL": callback,
        "SANDBOX_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    stack_env.update(env)
    return DispatchStack(start_service, stack_env, tmp_path)


def make_twilio(database_url: str, world: World) -> None:
    """Turn the seeded workspace into a Twilio one (as CreateWorkspace/RegisterTemplate would)."""
    with Seeder(database_url) as seed:
        seed.rows(
            "UPDATE workspace SET sender_provider = 'twilio', twilio_account_sid = %s"
            " WHERE id = %s RETURNING id",
            ACCOUNT,
            world.workspace_id,
        )
        seed.rows(
            "UPDATE template SET twilio_content_sid = %s WHERE workspace_id = %s RETURNING id",
            content_sid(str(TEMPLATE["name"]), str(TEMPLATE["language"])),
            world.workspace_id,
        )


def test_a_twilio_run_is_sent_watched_and_read(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = twilio_stack(start_service, stack_env, tmp_path)
    webhooks = {**FAST_WEBHOOKS, "read_share": 1.0, "read_without_delivered_share": 0.0}
    stack.start_sandbox(scenario(webhooks=webhooks, latency={"ms": 10, "jitter_ms": 10}))
    dispatch = stack.start_dispatch("a", DISPATCH_RATE_PER_SECOND="100")
    stack.start_webhook(dispatch.env["DISPATCH_LISTEN"])
    world = seed_world(database_url, [*PHONES, None], sender=SENDER)
    make_twilio(database_url, world)
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
    ledger = stack.ledger()
    assert sorted(e["wa_id"] for e in ledger) == sorted(p.lstrip("+") for p in PHONES)
    assert {e["phone_number_id"] for e in ledger} == {SENDER}
    assert all(e["wamid"].startswith("SM") for e in ledger)
    stack.wait_for_counts(world, run_id, lambda c: c.get("read", 0) == len(PHONES))
    with Seeder(database_url) as seed:
        rows = seed.rows(
            "SELECT provider_message_id, id::text FROM invite_message WHERE phone_e164 IS NOT NULL"
        )
        receipts = seed.rows("SELECT DISTINCT provider, state FROM webhook_receipt")
        providers = seed.rows(
            "SELECT DISTINCT provider FROM invite_message WHERE phone_e164 IS NOT NULL"
            " UNION ALL SELECT DISTINCT provider FROM status_event"
        )
    assert {sid: message for sid, message in rows} == {
        e["wamid"]: e["biz_opaque_callback_data"] for e in ledger
    }
    assert receipts == [("twilio", "applied")]
    # The messages and their statuses are Twilio's (both said `meta` before migration 0027).
    assert providers == [("twilio",), ("twilio",)]


def test_twilio_errors_are_classed_like_metas(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    rejected, opted_out, dropped = PHONES[0], PHONES[1], PHONES[2]
    stack = twilio_stack(start_service, stack_env, tmp_path)
    stack.start_sandbox(
        scenario(
            faults=[
                {"code": 131026, "recipients": [rejected]},  # Twilio 63024: terminal
                {"code": 131050, "recipients": [opted_out]},  # Twilio 21610: opt-out
                {"ambiguous": "server_error", "recipients": [dropped]},  # 500: never re-sent
            ]
        )
    )
    dispatch = stack.start_dispatch("a", DISPATCH_RATE_PER_SECOND="50")
    stack.start_webhook(dispatch.env["DISPATCH_LISTEN"])
    world = seed_world(database_url, PHONES[:5], sender=SENDER)
    make_twilio(database_url, world)
    run_id = stack.precheck_and_start(world)
    status = stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED)

    assert sorted((c.error_code, c.count) for c in status.failed_by_error_code) == [
        (21610, 1),
        (63024, 1),
    ]
    with Seeder(database_url) as seed:
        states = dict(seed.rows("SELECT phone_e164, state FROM invite_message"))
        attempts = dict(seed.rows("SELECT phone_e164, attempt_count FROM invite_message"))
        dnm = seed.rows("SELECT phone_e164 FROM do_not_message_entry WHERE removed_at IS NULL")
    assert states[rejected] == states[opted_out] == "failed"
    assert dnm == [(opted_out,)]
    assert attempts[dropped] == 1
    assert states[dropped] in ("sent", "delivered", "read")  # the callback settled it
    assert Counter(e["wa_id"] for e in stack.ledger())[dropped.lstrip("+")] == 1


@pytest.mark.slow
def test_killing_a_replica_mid_twilio_run_never_sends_anyone_twice(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    recipients, rate = 800, 200
    stack = twilio_stack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario(latency={"ms": 20, "jitter_ms": 30}))
    survivor = stack.start_dispatch("b", **replica_settings(rate))
    stack.start_dispatch("a", **replica_settings(rate))
    stack.start_webhook(survivor.env["DISPATCH_LISTEN"])
    world = seed_bulk_world(database_url, recipients)
    with Seeder(database_url) as seed:
        seed.rows(
            "UPDATE workspace SET sender_phone_number_id = %s WHERE id = %s RETURNING id",
            SENDER,
            world.workspace_id,
        )
    make_twilio(database_url, world)
    run_id = stack.precheck_and_start(world)

    rng = random.Random()
    kills = 0
    started = time.monotonic()
    while kills < 2 and time.monotonic() - started < 20:
        time.sleep(rng.uniform(0.2, 1.0))
        stack.dispatchers["a"].kill()
        kills += 1
        stack.start_dispatch("a")
    stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED, timeout=90)

    ledger = stack.ledger()
    per_recipient = Counter(entry["wa_id"] for entry in ledger)
    assert [wa_id for wa_id, n in per_recipient.items() if n > 1] == []
    with Seeder(database_url) as seed:
        rows = seed.rows("SELECT phone_e164, state, rejection_reason FROM invite_message")
    assert len(rows) == recipients
    outcome_unknown = 0
    for phone, state, reason in rows:
        if state in ("sent", "delivered", "read"):
            assert per_recipient[phone.lstrip("+")] == 1, phone
        else:
            assert (state, reason) == ("failed", "outcome_unknown"), (phone, state, reason)
            outcome_unknown += 1
    assert kills == 2
    assert outcome_unknown < recipients // 4
    print(f"kills={kills} outcome_unknown={outcome_unknown} sent={len(ledger)}")
    stats = stack.control("GET", "stats")
    assert stats["max_sends_in_any_second"] <= rate
