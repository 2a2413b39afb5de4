"""StartRun, CancelRun, ResumeRun and GetRunStatus on real Postgres."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import MessageState, RejectionReason, RunState
from dispatch_service.dispatcher.reconciler import Reconciler
from dispatch_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from dispatch_service.persistence import message_transitions
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from dispatch_service.use_cases.reads import get_run_status
from dispatch_service.use_cases.runs import (
    StartRunResult,
    cancel_run,
    resume_run,
    run_command,
    start_run,
    start_run_command,
)
from tests.integration.dispatch_support import World, precheck_and_start, seed_world
from tests.integration.factories import Seeder

A, B, C = "+14155550100", "+14155550101", "+14155550102"


async def precheck(sessions: async_sessionmaker[AsyncSession], world: World, ttl: int = 600) -> str:
    command = precheck_command(world.admin, str(world.event_id), str(world.template_id), 0, [])
    return str((await precheck_send(sessions, command, ttl_seconds=ttl)).precheck_id)


async def start(
    sessions: async_sessionmaker[AsyncSession],
    actor: uuid.UUID,
    precheck_id: str,
    key: str = "k1",
) -> StartRunResult:
    return await start_run(sessions, start_run_command(actor, precheck_id, key))


async def test_a_run_its_messages_and_the_audit_entry_are_created_together(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, None, B])
    precheck_id = await precheck(sessions, world)
    result = await start(sessions, world.parent_admin, precheck_id)

    assert result.created
    run = result.run
    assert (run.state, run.total_count, run.eligible_count, run.blocked_count) == (
        RunState.QUEUED,
        3,
        2,
        1,
    )
    with Seeder(database_url) as seed:
        messages = seed.rows(
            "SELECT position, phone_e164, state, rejection_reason, variables FROM invite_message"
            " WHERE run_id = %s ORDER BY position",
            run.id,
        )
        audit = seed.rows(
            "SELECT action, actor_id, subject_id, details->>'eligible' FROM audit_entry"
        )
    assert [(p, phone, s, r) for p, phone, s, r, _ in messages] == [
        (0, A, "queued", None),
        (1, None, "blocked", "no_phone"),
        (2, B, "queued", None),
    ]
    assert messages[0][4][1] == "Sat 1 Jun 2030, 17:30"  # frozen event_date
    assert audit == [("invite.send", world.parent_admin, str(run.id), "2")]


async def test_the_same_key_returns_the_same_run_and_another_precheck_under_it_is_refused(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A])
    first_precheck = await precheck(sessions, world)
    first = await start(sessions, world.parent_admin, first_precheck)
    again = await start(sessions, world.parent_admin, first_precheck)
    assert (again.run.id, again.created) == (first.run.id, False)

    with pytest.raises(AlreadyExists):
        await start(sessions, world.parent_admin, await precheck(sessions, world))
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT count(*) FROM invite_send_run") == 1
        assert seed.scalar("SELECT count(*) FROM invite_message") == 1


async def test_concurrent_calls_with_one_key_create_one_run(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, B, C])
    precheck_id = await precheck(sessions, world)
    results = await asyncio.gather(
        *(start(sessions, world.parent_admin, precheck_id, "same") for _ in range(5))
    )
    assert len({r.run.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT count(*) FROM invite_message") == 3
        assert seed.scalar("SELECT count(*) FROM audit_entry") == 1


async def test_a_precheck_starts_one_run_only(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A])
    precheck_id = await precheck(sessions, world)
    await start(sessions, world.parent_admin, precheck_id, "k1")
    with pytest.raises(FailedPrecondition, match="already started"):
        await start(sessions, world.parent_admin, precheck_id, "k2")


async def test_two_prechecks_taken_together_never_invite_anyone_twice(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, B])
    first, second = await precheck(sessions, world), await precheck(sessions, world)
    await start(sessions, world.parent_admin, first, "k1")
    later = await start(sessions, world.parent_admin, second, "k2")
    assert later.run.eligible_count == 0
    assert later.run.state is RunState.COMPLETED  # nothing to send
    with Seeder(database_url) as seed:
        reasons = seed.rows(
            "SELECT DISTINCT rejection_reason FROM invite_message WHERE run_id = %s",
            later.run.id,
        )
    assert reasons == [("already_invited",)]


@pytest.mark.parametrize("role", ["admin", "viewer"])
async def test_only_a_parent_admin_may_start_and_nothing_is_written(
    database_url: str, sessions: async_sessionmaker[AsyncSession], role: str
) -> None:
    world = seed_world(database_url, [A])
    precheck_id = await precheck(sessions, world)
    actor = world.admin if role == "admin" else world.viewer
    with pytest.raises(PermissionDenied):
        await start(sessions, actor, precheck_id)
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT count(*) FROM invite_send_run") == 0
        assert seed.scalar("SELECT count(*) FROM audit_entry") == 0


async def test_an_expired_precheck_is_a_failed_precondition(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A])
    precheck_id = await precheck(sessions, world)
    with Seeder(database_url) as seed:
        seed.conn.execute("UPDATE precheck SET expires_at = now() - interval '1 second'")
    with pytest.raises(FailedPrecondition, match="expired"):
        await start(sessions, world.parent_admin, precheck_id)


@pytest.mark.parametrize("status", ["PENDING", "PAUSED", "REJECTED", "DISABLED"])
async def test_a_template_that_is_not_approved_is_refused(
    database_url: str, sessions: async_sessionmaker[AsyncSession], status: str
) -> None:
    world = seed_world(database_url, [A], template_status=status)
    with pytest.raises(FailedPrecondition, match=status):
        await start(sessions, world.parent_admin, await precheck(sessions, world))


async def test_unknown_template_variables_are_refused_by_name(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A], variables=("guest_name", "dress_code"))
    with pytest.raises(FailedPrecondition, match="dress_code"):
        await start(sessions, world.parent_admin, await precheck(sessions, world))


async def test_other_workspaces_prechecks_and_bad_input(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world, other = seed_world(database_url, [A]), seed_world(database_url, [B])
    theirs = await precheck(sessions, other)
    with pytest.raises(NotFound):
        await start(sessions, world.parent_admin, theirs)
    with pytest.raises(InvalidArgument):
        start_run_command(world.parent_admin, "not-a-uuid", "")
    with pytest.raises(InvalidArgument):
        start_run_command(world.parent_admin, str(uuid.uuid4()), "x" * 201)


async def test_cancel_cancels_queued_messages_and_resume_needs_a_paused_run(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, B, None])
    run = (await precheck_and_start(sessions, world)).run
    command = run_command(world.parent_admin, str(run.id))
    with pytest.raises(FailedPrecondition, match="paused"):
        await resume_run(sessions, command)
    with pytest.raises(PermissionDenied):
        await cancel_run(sessions, run_command(world.admin, str(run.id)))

    cancelled = await cancel_run(sessions, command)
    assert cancelled.state is RunState.CANCELLED
    assert cancelled.finished_at is not None
    status = await get_run_status(sessions, world.viewer, run.id)
    assert status.counts.by_state[MessageState.CANCELLED] == 2
    assert status.counts.by_state[MessageState.BLOCKED] == 1
    with pytest.raises(FailedPrecondition):
        await cancel_run(sessions, command)


async def test_cancel_holds_at_most_a_batch_of_messages_per_transaction(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statement cancelling a 90,000-message run held their locks for seconds, and the send
    worker (its marks and claims serve every sender) waited behind it. CancelRun cancels the run
    and a first batch together, the rest in batches of their own, and answers when all are."""
    phones = [f"+1415555{n:04d}" for n in range(200, 207)]
    world = seed_world(database_url, phones)
    run = (await precheck_and_start(sessions, world)).run
    monkeypatch.setattr(message_transitions, "CANCEL_BATCH", 3)
    cancelled = await cancel_run(sessions, run_command(world.parent_admin, str(run.id)))
    assert cancelled.state is RunState.CANCELLED
    counts = (await get_run_status(sessions, world.viewer, run.id)).counts.by_state
    assert (counts[MessageState.CANCELLED], counts[MessageState.QUEUED]) == (7, 0)
    with Seeder(database_url) as seed:
        # The transaction that wrote each message's current version (xmin), and the run's.
        batches = seed.conn.execute(
            "SELECT xmin::text, count(*) FROM invite_message WHERE run_id = %s GROUP BY 1"
            " ORDER BY xmin::text::bigint",
            (run.id,),
        ).fetchall()
        run_xmin = seed.scalar("SELECT xmin::text FROM invite_send_run WHERE id = %s", run.id)
        audit = seed.scalar(
            "SELECT details FROM audit_entry WHERE action = 'invite.cancel' ORDER BY id DESC"
            " LIMIT 1"
        )
    assert [count for _, count in batches] == [3, 3, 1]
    assert batches[0][0] == run_xmin  # the first batch commits with the run's cancel
    assert audit == {"queued_messages": 7, "previous_state": run.state.value}


async def test_cancel_never_waits_on_a_message_another_transaction_holds(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A send worker holds a message (marking it `sending`) while CancelRun runs: the cancel
    does not wait for it (waiting let the two lock the run's messages in opposite orders and
    deadlock), and the reconciler cancels what it skipped once it is free."""
    world = seed_world(database_url, [A, B, C])
    run = (await precheck_and_start(sessions, world)).run
    with psycopg.connect(database_url) as worker:
        worker.execute("SELECT id FROM invite_message WHERE phone_e164 = %s FOR UPDATE", (B,))
        cancelled = await asyncio.wait_for(
            cancel_run(sessions, run_command(world.parent_admin, str(run.id))), timeout=10
        )
        assert cancelled.state is RunState.CANCELLED
        counts = (await get_run_status(sessions, world.viewer, run.id)).counts.by_state
        assert (counts[MessageState.CANCELLED], counts[MessageState.QUEUED]) == (2, 1)
        worker.rollback()
    await Reconciler(sessions, outcome_unknown_seconds=60).reconcile()
    counts = (await get_run_status(sessions, world.viewer, run.id)).counts.by_state
    assert (counts[MessageState.CANCELLED], counts[MessageState.QUEUED]) == (3, 0)
    with Seeder(database_url) as seed:
        states = seed.conn.execute(
            "SELECT state, lease_owner FROM invite_message WHERE run_id = %s", (run.id,)
        ).fetchall()
    assert states == [("cancelled", None)] * 3


async def test_resume_turns_a_paused_run_back_to_dispatching(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A])
    run = (await precheck_and_start(sessions, world)).run
    with Seeder(database_url) as seed:
        seed.conn.execute("UPDATE invite_send_run SET state = 'paused', pause_reason = 'x'")
    resumed = await resume_run(sessions, run_command(world.parent_admin, str(run.id)))
    assert resumed.state is RunState.DISPATCHING
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT action FROM audit_entry ORDER BY id DESC LIMIT 1") == (
            "invite.resume"
        )


async def test_status_counts_follow_every_writer_and_match_a_full_count(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, B, C, None])
    run = (await precheck_and_start(sessions, world)).run
    with Seeder(database_url) as seed:  # writers the dispatcher does not know about
        seed.conn.execute(
            "UPDATE invite_message SET state = 'failed', rejection_reason = 'provider_rejected',"
            " error_code = 131026 WHERE phone_e164 = %s",
            (A,),
        )
        seed.conn.execute("UPDATE invite_message SET state = 'read' WHERE phone_e164 = %s", (B,))
        full = dict(seed.rows("SELECT state, count(*) FROM invite_message GROUP BY state"))
    status = await get_run_status(sessions, world.viewer, run.id)
    counts = status.counts
    assert {s.value: n for s, n in counts.by_state.items() if n} == full
    assert counts.failed_by_error_code == {131026: 1}
    assert counts.failed_by_reason == {RejectionReason.PROVIDER_REJECTED: 1}
    assert counts.blocked_by_reason == {RejectionReason.NO_PHONE: 1}
    assert (counts.total, counts.done, counts.progress) == (4, 3, 0.75)
    other = seed_world(database_url, [A])
    with pytest.raises(NotFound):
        await get_run_status(sessions, other.parent_admin, run.id)
