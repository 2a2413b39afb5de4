"""StartRun commits the run with its first messages, then creates the rest in batches: the
result equals a run created at once, nobody is invited twice while a run is still being
created, and a run whose StartRun died between its transactions is finished (by a replayed
call or by the reconciler) and never completes before."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import MessageState, RunState
from dispatch_service.dispatcher import reconciler as reconciler_module
from dispatch_service.dispatcher.reconciler import Reconciler
from dispatch_service.grpc_api.dispatch_mapping import run_status
from dispatch_service.persistence import runs as run_store
from dispatch_service.use_cases import runs as run_cases
from dispatch_service.use_cases.exports import export_run_messages
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from dispatch_service.use_cases.reads import get_run_status
from dispatch_service.use_cases.runs import (
    MessageCreation,
    StartRunResult,
    cancel_run,
    run_command,
    start_run,
    start_run_command,
)
from tests.integration.dispatch_support import World, seed_world
from tests.integration.factories import Seeder

PHONES = [f"+1415555{n:04d}" for n in range(100, 111)]
AUDIENCE: list[str | None] = [*PHONES[:3], None, *PHONES[3:]]  # 12 households, one without


class StartRunDied(Exception):
    """Stands for the API process dying after StartRun's first transaction committed."""


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two messages in StartRun's own transaction, then batches of three."""
    monkeypatch.setattr(run_cases, "FIRST_MESSAGES", 2)
    monkeypatch.setattr(run_store, "MESSAGE_BATCH", 3)


async def precheck(sessions: async_sessionmaker[AsyncSession], world: World) -> str:
    command = precheck_command(world.admin, str(world.event_id), str(world.template_id), 0, [])
    return str((await precheck_send(sessions, command, ttl_seconds=600)).precheck_id)


async def start(
    sessions: async_sessionmaker[AsyncSession], world: World, precheck_id: str, key: str = "k1"
) -> StartRunResult:
    command = start_run_command(world.parent_admin, precheck_id, key)
    return await start_run(sessions, command)


async def start_that_dies(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    world: World,
    precheck_id: str,
    key: str = "k1",
) -> uuid.UUID:
    """StartRun dying between its first transaction and its batches; the run's id."""

    async def died(*_: object) -> None:
        raise StartRunDied

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_cases, "finish_messages", died)
        with pytest.raises(StartRunDied):
            await start(sessions, world, precheck_id, key)
    with Seeder(database_url) as seed:
        run_id = seed.scalar("SELECT id FROM invite_send_run WHERE idempotency_key = %s", key)
    return uuid.UUID(str(run_id))


def messages(database_url: str, run_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with Seeder(database_url) as seed:
        return seed.rows(
            "SELECT position, phone_e164, state, rejection_reason, variables, provider, language"
            " FROM invite_message WHERE run_id = %s ORDER BY position",
            run_id,
        )


def progress(database_url: str, run_id: uuid.UUID) -> tuple[Any, ...]:
    """The run's next_candidate_position, its state and how many messages it has."""
    with Seeder(database_url) as seed:
        return seed.rows(
            "SELECT r.next_candidate_position, r.state, count(m.id) FROM invite_send_run r"
            " LEFT JOIN invite_message m ON m.run_id = r.id WHERE r.id = %s GROUP BY r.id",
            run_id,
        )[0]


def send_all_queued(database_url: str, run_id: uuid.UUID) -> None:
    """What the dispatcher would do to the run's queued messages (through `sending`)."""
    with Seeder(database_url) as seed:
        for before, after in (("queued", "sending"), ("sending", "sent")):
            seed.conn.execute(
                "UPDATE invite_message SET state = %s WHERE run_id = %s AND state = %s",
                (after, run_id, before),
            )


async def test_a_run_created_in_batches_equals_one_created_at_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    batched_world = seed_world(database_url, AUDIENCE)
    batched = await start(sessions, batched_world, await precheck(sessions, batched_world))
    at_once_world = seed_world(database_url, AUDIENCE)
    at_once_precheck = await precheck(sessions, at_once_world)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_cases, "FIRST_MESSAGES", None)
        at_once = await start(sessions, at_once_world, at_once_precheck)

    assert progress(database_url, batched.run.id) == (None, "queued", 12)
    # Equal but for the guests' names (each world seeds its own households).
    batched_rows, at_once_rows = (
        [(*row[:4], row[4][1:], *row[5:]) for row in messages(database_url, run.id)]
        for run in (batched.run, at_once.run)
    )
    assert batched_rows == at_once_rows
    assert len(batched_rows) == 12
    for run in (batched.run, at_once.run):
        assert (run.total_count, run.eligible_count, run.blocked_count) == (12, 11, 1)
    with Seeder(database_url) as seed:  # one change-log entry per message created, as at once
        created = seed.rows(
            "SELECT count(*) FROM change_log WHERE kind = 'message' AND from_state IS NULL"
            " GROUP BY run_id"
        )
    assert created == [(12,), (12,)]


async def test_a_run_whose_start_died_is_finished_by_the_replayed_call_and_completes_after(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    precheck_id = await precheck(sessions, world)
    run_id = await start_that_dies(database_url, sessions, world, precheck_id)
    assert progress(database_url, run_id) == (2, "queued", 2)
    send_all_queued(database_url, run_id)  # the first two went out: ten are still to create
    await Reconciler(sessions, 60).reconcile()  # creation not idle long enough to take over
    assert progress(database_url, run_id) == (2, "queued", 2)

    again = await start(sessions, world, precheck_id)
    assert (again.run.id, again.created) == (run_id, False)
    assert progress(database_url, run_id) == (None, "queued", 12)
    await Reconciler(sessions, 60).reconcile()
    assert progress(database_url, run_id)[:2] == (None, "queued")  # ten still to send
    send_all_queued(database_url, run_id)
    await Reconciler(sessions, 60).reconcile()
    assert progress(database_url, run_id) == (None, RunState.COMPLETED.value, 12)


async def test_the_reconciler_finishes_a_run_left_unfinished_once_its_creation_is_idle(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    small_batches: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = seed_world(database_url, AUDIENCE)
    run_id = await start_that_dies(database_url, sessions, world, await precheck(sessions, world))
    monkeypatch.setattr(reconciler_module, "UNFINISHED_IDLE_SECONDS", 0.0)
    await Reconciler(sessions, 60).reconcile()
    assert progress(database_url, run_id) == (None, "queued", 12)
    assert [row[0] for row in messages(database_url, run_id)] == list(range(12))


async def test_a_run_still_being_created_and_a_later_run_never_invite_one_phone_twice(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    first_precheck, second_precheck = (
        await precheck(sessions, world),
        await precheck(sessions, world),
    )
    first = await start_that_dies(database_url, sessions, world, first_precheck, "first")
    # Two of the first run's messages exist; its other candidates are not messages yet.
    second = await start(sessions, world, second_precheck, "second")
    assert second.run.eligible_count == 0
    await run_cases.finish_messages(sessions, first)

    invited = [row for row in messages(database_url, first) if row[2] == "queued"]
    assert len(invited) == 11
    reasons = {row[3] for row in messages(database_url, second.run.id)}
    assert reasons == {"already_invited", "no_phone"}


async def test_phones_invited_since_the_precheck_are_blocked_wherever_they_fall(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    late_precheck = await precheck(sessions, world)
    earlier = await start(sessions, world, await precheck(sessions, world), "earlier")
    # The earlier run invited everyone; only its messages to two phones past the late run's
    # first batch stay invited, the rest failed (a failed invitation may be sent again).
    keep = {PHONES[6], PHONES[9]}
    with Seeder(database_url) as seed:
        seed.conn.execute(
            "UPDATE invite_message SET state = 'failed', rejection_reason = 'provider_rejected'"
            " WHERE run_id = %s AND NOT phone_e164 = ANY(%s)",
            (earlier.run.id, list(keep)),
        )
    late_id = await start_that_dies(database_url, sessions, world, late_precheck, "late")
    # StartRun's own transaction created the first two and the two already invited.
    rows = messages(database_url, late_id)
    assert [(r[1], r[2], r[3]) for r in rows if r[1] in keep] == [
        (phone, "blocked", "already_invited") for phone in sorted(keep)
    ]
    assert len(rows) == 4
    await run_cases.finish_messages(sessions, late_id)
    rows = messages(database_url, late_id)
    assert [row[0] for row in rows] == list(range(12))
    assert sorted(r[1] for r in rows if r[3] == "already_invited") == sorted(keep)
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT eligible_count FROM invite_send_run WHERE id = %s", late_id) == 9


async def test_in_the_background_start_run_answers_before_the_rest_of_its_messages_exist(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    creation = MessageCreation(sessions)
    command = start_run_command(world.parent_admin, await precheck(sessions, world), "k1")
    result = await start_run(sessions, command, creation)

    assert (result.run.next_candidate_position, result.run.total_count) == (2, 12)
    assert progress(database_url, result.run.id) == (2, "queued", 2)
    await creation.drain(grace_seconds=10)
    assert progress(database_url, result.run.id) == (None, "queued", 12)


async def test_the_status_of_a_run_still_being_created_counts_its_other_messages_as_uncreated(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    run_id = await start_that_dies(database_url, sessions, world, await precheck(sessions, world))
    send_all_queued(database_url, run_id)  # the two that exist are sent

    creating = await get_run_status(sessions, world.admin, run_id)
    assert (creating.counts.total, creating.counts.uncreated) == (12, 10)
    assert creating.counts.by_state[MessageState.SENT] == 2
    assert sum(creating.counts.by_state.values()) == 2
    assert (creating.counts.done, creating.counts.progress) == (2, 2 / 12)
    reply = run_status(creating)
    assert (reply.total_count, reply.uncreated_count, reply.final_count) == (12, 10, 2)

    await run_cases.finish_messages(sessions, run_id)
    created = await get_run_status(sessions, world.admin, run_id)
    assert (created.counts.total, created.counts.uncreated) == (12, 0)
    assert sum(created.counts.by_state.values()) == 12
    assert created.counts.by_state[MessageState.QUEUED] == 9  # one has no phone: blocked
    assert run_status(created).uncreated_count == 0


async def test_an_export_of_a_run_still_being_created_lists_every_recipient(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    run_id = await start_that_dies(database_url, sessions, world, await precheck(sessions, world))
    assert progress(database_url, run_id)[2] == 2

    batches = [batch async for batch in export_run_messages(sessions, world.admin, run_id, 5)]
    assert [row.position for batch in batches for row in batch] == list(range(12))
    assert progress(database_url, run_id) == (None, "queued", 12)


async def test_messages_created_after_their_run_was_cancelled_end_cancelled(
    database_url: str, sessions: async_sessionmaker[AsyncSession], small_batches: None
) -> None:
    world = seed_world(database_url, AUDIENCE)
    run_id = await start_that_dies(database_url, sessions, world, await precheck(sessions, world))
    await cancel_run(sessions, run_command(world.parent_admin, str(run_id)))
    await run_cases.finish_messages(sessions, run_id)
    await Reconciler(sessions, 60).reconcile()  # cancels the stragglers the batches created
    with Seeder(database_url) as seed:
        states = seed.rows(
            "SELECT state, count(*) FROM invite_message WHERE run_id = %s GROUP BY state"
            " ORDER BY state",
            run_id,
        )
    assert states == [("blocked", 1), ("cancelled", 11)]
    assert progress(database_url, run_id)[:2] == (None, RunState.CANCELLED.value)


async def test_a_run_that_cannot_be_finished_holds_up_neither_other_runs_nor_the_reconciler(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    small_batches: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken_world, world = seed_world(database_url, AUDIENCE), seed_world(database_url, AUDIENCE)
    broken = await start_that_dies(
        database_url, sessions, broken_world, await precheck(sessions, broken_world), "broken"
    )
    run_id = await start_that_dies(database_url, sessions, world, await precheck(sessions, world))
    with Seeder(database_url) as seed:  # a spec nothing can create messages from
        seed.conn.execute(
            "UPDATE invite_send_run SET message_spec = '{}', created_at = created_at"
            " - interval '1 minute' WHERE id = %s",
            (broken,),
        )
    monkeypatch.setattr(reconciler_module, "UNFINISHED_IDLE_SECONDS", 0.0)
    await Reconciler(sessions, 60).reconcile()
    assert progress(database_url, broken) == (2, "queued", 2)
    assert progress(database_url, run_id) == (None, "queued", 12)
