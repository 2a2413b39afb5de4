"""An API process killed while it creates a large run's messages (StartRun has answered; the rest
of the messages are being written in the background) loses and repeats nobody: a send worker's
reconciler finishes the creation, one message per candidate, and the run's counts add up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dispatch_service.dispatcher.reconciler import UNFINISHED_IDLE_SECONDS
from dispatch_service.persistence.runs import FIRST_MESSAGES, MESSAGE_BATCH
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import DispatchStack, scenario
from tests.e2e.test_dispatch_crash import seed_bulk_world
from tests.integration.factories import Seeder

RECIPIENTS = FIRST_MESSAGES + MESSAGE_BATCH + 500  # StartRun's own, one full batch, a short one


def creation(database_url: str, run_id: str) -> tuple[int | None, int, int, int]:
    """The run's next_candidate_position, its messages, their distinct positions, its total."""
    with Seeder(database_url) as seed:
        row = seed.rows(
            "SELECT r.next_candidate_position, count(m.id), count(DISTINCT m.position),"
            " r.total_count FROM invite_send_run r LEFT JOIN invite_message m ON m.run_id = r.id"
            " WHERE r.id = %s GROUP BY r.id",
            run_id,
        )[0]
    return row[0], int(row[1]), int(row[2]), int(row[3])


@pytest.mark.slow
def test_an_api_killed_while_creating_a_runs_messages_loses_and_repeats_nobody(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario())
    api = stack.start_dispatch("api", DISPATCHER_ENABLED="false")
    world = seed_bulk_world(database_url, RECIPIENTS)
    run_id = stack.precheck_and_start(world)
    api.kill()  # StartRun answered; its background batches die with the process

    following, created, _, total = creation(database_url, run_id)
    assert total == RECIPIENTS
    assert following is not None  # killed while it was creating them
    assert created < RECIPIENTS

    stack.start_worker("a", DISPATCH_RATE_PER_SECOND="1", DISPATCHER_RECONCILE_SECONDS="0.5")
    deadline = time.monotonic() + UNFINISHED_IDLE_SECONDS + 60
    while creation(database_url, run_id)[0] is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert creation(database_url, run_id) == (None, RECIPIENTS, RECIPIENTS, RECIPIENTS)
    with Seeder(database_url) as seed:  # the counts GetRunStatus reads add up to the run's total
        counted = seed.scalar("SELECT sum(count) FROM invite_run_count WHERE run_id = %s", run_id)
    assert counted == RECIPIENTS
