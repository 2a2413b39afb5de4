"""An API process killed while it creates a large run's messages (StartRun has answered; the rest
of the messages are being written in the background) loses and repeats nobody: a send worker's
reconciler, or the client replaying StartRun on another API process, finishes the creation, one
message per candidate, and the run's counts add up."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dispatch_service.dispatcher.reconciler import UNFINISHED_IDLE_SECONDS
from dispatch_service.persistence.runs import FIRST_MESSAGES, MESSAGE_BATCH
from tests.e2e.conftest import StartService
from tests.e2e.dispatch_stack import DispatchStack, scenario
from tests.e2e.test_dispatch_crash import seed_bulk_world
from tests.integration.dispatch_support import World
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


@dataclass
class KilledStart:
    """A large run whose StartRun answered on an API process killed while it created the rest."""

    stack: DispatchStack
    world: World
    precheck_id: str
    run_id: str


def start_and_kill_the_api(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> KilledStart:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario())
    api = stack.start_dispatch("api", DISPATCHER_ENABLED="false")
    world = seed_bulk_world(database_url, RECIPIENTS)
    precheck_id = stack.precheck(world)
    run_id = stack.start(world, precheck_id, "run-1").run.run_id
    api.kill()  # StartRun answered; its background batches die with the process
    following, created, _, total = creation(database_url, run_id)
    assert total == RECIPIENTS
    assert following is not None
    assert created < RECIPIENTS
    return KilledStart(stack, world, precheck_id, run_id)


def wait_until_created(database_url: str, run_id: str, seconds: float) -> None:
    """Poll until every message of the run exists (or `seconds` passed)."""
    deadline = time.monotonic() + seconds
    while creation(database_url, run_id)[0] is not None and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.slow
def test_an_api_killed_while_creating_a_runs_messages_loses_and_repeats_nobody(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    killed = start_and_kill_the_api(database_url, start_service, stack_env, tmp_path)
    run_id = killed.run_id

    # The slowest cap allowed: the worker creates the rest of the run and sends little of it.
    killed.stack.start_worker("a", DISPATCH_RATE_PER_SECOND="3", DISPATCHER_RECONCILE_SECONDS="0.5")
    wait_until_created(database_url, run_id, UNFINISHED_IDLE_SECONDS + 60)
    assert creation(database_url, run_id) == (None, RECIPIENTS, RECIPIENTS, RECIPIENTS)
    with Seeder(database_url) as seed:  # the counts GetRunStatus reads add up to the run's total
        counted = seed.scalar("SELECT sum(count) FROM invite_run_count WHERE run_id = %s", run_id)
    assert counted == RECIPIENTS


@pytest.mark.slow
def test_a_start_run_replayed_after_the_api_was_killed_finishes_what_it_was_creating(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    killed = start_and_kill_the_api(database_url, start_service, stack_env, tmp_path)
    stack, world, run_id = killed.stack, killed.world, killed.run_id

    stack.start_dispatch("api")  # a new process, as before without a worker: only the replay
    status = stack.status(world, run_id)
    assert status.total_count == RECIPIENTS
    assert 0 < status.uncreated_count == RECIPIENTS - creation(database_url, run_id)[1]

    replayed = stack.start(world, killed.precheck_id, "run-1")
    assert (replayed.run.run_id, replayed.created) == (run_id, False)
    wait_until_created(database_url, run_id, 60)
    assert creation(database_url, run_id) == (None, RECIPIENTS, RECIPIENTS, RECIPIENTS)
    status = stack.status(world, run_id)
    assert (status.total_count, status.uncreated_count) == (RECIPIENTS, 0)
    assert sum(c.count for c in status.by_state) == RECIPIENTS
