"""Postgres restarted in the middle of a run (a Postgres of this test's own, stopped as in a
crash and started again on the same port), with two dispatch replicas, the ingestor and the
sandbox. Calls during the outage answer UNAVAILABLE with RetryInfo; send results known during
the outage are written once Postgres answers (no accepted send ends outcome_unknown); receipts
stored meanwhile are applied promptly; the usual checks hold at the end."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from common.db.migrate import upgrade
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.conftest import create_database
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import FAST_WEBHOOKS, DispatchStack, scenario
from tests.e2e.restartable_postgres import RestartablePostgres
from tests.e2e.test_dispatch_crash import seed_bulk_world
from tests.e2e.test_dispatch_faults import assert_promises_kept
from tests.integration.factories import Seeder

RATE = 100
OUTAGE_SECONDS = 6.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[RestartablePostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="invites-restart-pgdata-"))
    server = RestartablePostgres(data_dir)
    yield server
    server.stop("fast")
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database_url(own_postgres: RestartablePostgres) -> str:
    """This module's tests run on the Postgres they may restart."""
    url = create_database(own_postgres.url, f"invites_restart_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    return url


def log_lines(text: str, since: float, until: float) -> list[dict[str, object]]:
    """JSON log lines written between two wall-clock moments."""
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        stamp = (
            time.mktime(time.strptime(str(line["ts"])[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        )
        if since - 1 <= stamp <= until + 1:
            lines.append(line)
    return lines


@pytest.mark.slow
def test_postgres_restarted_mid_run_loses_nothing(
    own_postgres: RestartablePostgres,
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
) -> None:
    settings = {
        "DISPATCH_RATE_PER_SECOND": str(RATE),
        "DISPATCH_OUTCOME_UNKNOWN_SECONDS": "30",
        "DISPATCH_LEASE_SECONDS": "10",
        "DISPATCHER_RECONCILE_SECONDS": "0.5",
    }
    stack = DispatchStack(start_service, stack_env, tmp_path)
    # Meta redelivers refused webhooks for days; here every second at most
    redelivery = {"initial_ms": 200, "multiplier": 2, "max_interval_s": 1}
    stack.start_sandbox(
        scenario(
            latency={"ms": 20, "jitter_ms": 30}, webhooks={**FAST_WEBHOOKS, "retry": redelivery}
        )
    )
    a = stack.start_dispatch("a", **settings)
    b = stack.start_dispatch("b", **settings)
    webhook = stack.start_webhook(a.env["DISPATCH_LISTEN"])
    world = seed_bulk_world(database_url, 800)
    run_id = stack.precheck_and_start(world)
    stack.wait_for_counts(world, run_id, lambda c: c.get("sent", 0) + c.get("delivered", 0) > 100)

    down_at = time.time()
    own_postgres.stop()
    sent_before = len(stack.ledger())
    time.sleep(1.0)
    channel, stub = stack.stub()
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.GetRunStatus(
            pb.GetRunStatusRequest(run_id=run_id), metadata=stack.md(world.viewer), timeout=10
        )
    error = refused.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    assert status.code == code_pb2.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))
    time.sleep(OUTAGE_SECONDS - 1.0)
    sent_during = len(stack.ledger()) - sent_before
    own_postgres.start()
    up_at = time.time()

    def sending_again() -> bool:
        return len(stack.ledger()) > sent_before + sent_during

    deadline = time.monotonic() + 30
    while not sending_again() and time.monotonic() < deadline:
        time.sleep(0.1)
    # from the sandbox's own clock (polling it answers late while it redelivers the webhooks
    # the ingestor refused during the outage)
    resumed = [e["accepted_at"] for e in stack.ledger()[sent_before + sent_during :]]
    assert resumed, "nothing sent after the restart"
    to_sending = min(resumed) - up_at
    with Seeder(database_url) as seed:  # receipts stored before the outage, not yet applied
        deadline = time.monotonic() + 30
        while seed.rows(
            "SELECT count(*) FROM webhook_receipt WHERE state = 'pending'"
            " AND received_at < to_timestamp(%s)",
            up_at,
        )[0][0]:
            assert time.monotonic() < deadline, "receipts left unapplied"
            time.sleep(0.2)
        # when the last of them was applied, by the database's clock (this poll starts late)
        (last_applied,) = seed.rows(
            "SELECT extract(epoch FROM max(applied_at))::float8 FROM webhook_receipt"
            " WHERE received_at < to_timestamp(%s)",
            up_at,
        )[0]
        to_receipts = max(0.0, (last_applied or up_at) - up_at)
    stack.wait_for_run(world, run_id, types.RUN_STATE_COMPLETED, timeout=60)

    stack.settle_webhooks(database_url)
    with Seeder(database_url) as seed:
        unapplied_statuses = seed.rows(
            "SELECT count(*) FROM invite_message WHERE run_id = %s AND state = 'sent'", run_id
        )[0][0]
    outage_lines = {
        process.name: log_lines(process.log(), down_at, up_at) for process in (a, b, webhook)
    }
    tracebacks = sum(1 for lines in outage_lines.values() for line in lines if "exc" in line)
    figures = assert_promises_kept(stack, database_url, world, run_id, RATE)
    print(
        f"postgres restart: {figures}; sent during the outage {sent_during} (in flight);"
        f" {to_sending:.1f}s from recovery to sending, {to_receipts:.1f}s to receipts applied;"
        f" log lines during the outage { {k: len(v) for k, v in outage_lines.items()} },"
        f" tracebacks {tracebacks}, messages left 'sent' {unapplied_statuses}"
    )
    assert figures["outcome_unknown"] == 0  # every accepted send's result was kept and written
    assert unapplied_statuses == 0  # every delivered webhook was applied (the sandbox sends one)
    assert tracebacks == 0
    for process in (a, b):  # results known during the outage were kept, never given up
        assert "could not record a send result" not in process.log()
