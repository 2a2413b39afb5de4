"""The dispatcher on real Postgres against a recording fake of Meta (httpx.MockTransport):
every outcome class, do-not-message at send time, per-recipient back-off, the reconciler."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import psycopg
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import driver_autocommit, outside_transaction
from dispatch_service.dispatcher import rate_limiter as rate_limiter_module
from dispatch_service.dispatcher import worker as worker_module
from dispatch_service.dispatcher.claims import ClaimedMessage, ClaimSettings, claim
from dispatch_service.dispatcher.rate_limiter import OutagePolicy, SenderRateLimiter
from dispatch_service.dispatcher.reconciler import Reconciler
from dispatch_service.dispatcher.results import Released, Result, RetryPolicy, write_results
from dispatch_service.dispatcher.worker import Dispatcher, Marker
from dispatch_service.domain.retry import Backoff
from dispatch_service.domain.send_rate import RateSettings
from dispatch_service.persistence.claims import ActiveRun, active_runs
from dispatch_service.persistence.message_transitions import mark_attempting
from dispatch_service.persistence.rate_limit import lock_schedule, save_schedule
from dispatch_service.providers.base import NotSent, SendOutcome, TemplateSend
from dispatch_service.use_cases.reads import get_run_status
from dispatch_service.use_cases.runs import cancel_run, resume_run, run_command
from tests.integration.dispatch_support import (
    FakeMeta,
    RunningDispatcher,
    accept,
    graph_error,
    precheck_and_start,
    running,
    seed_world,
    wait_for,
)
from tests.integration.dispatch_support import (
    test_config as dispatcher_config,
)
from tests.integration.factories import DEFAULT_SENDER, Seeder

PHONES = [f"+1415555{n:04d}" for n in range(10)]
TEN_SECONDS = timedelta(seconds=10)
"""A marked message's lease past its claim's, in the Marker tests."""


async def run_state(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> str:
    async with outside_transaction(sessions) as session:
        return str(
            await session.scalar(
                text("SELECT state FROM invite_send_run WHERE id = :id"), {"id": run_id}
            )
        )


async def messages(sessions: async_sessionmaker[AsyncSession]) -> dict[str, dict[str, Any]]:
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT phone_e164, state, rejection_reason, error_code, attempt_count,"
                " provider_message_id, wa_id, sent_at, next_attempt_at FROM invite_message"
            )
        )
        return {r.phone_e164: dict(r._mapping) for r in rows}


async def _active_runs(sessions: async_sessionmaker[AsyncSession]) -> list[ActiveRun]:
    async with sessions() as session:
        return await active_runs(session)


def completed(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> Any:
    async def check() -> bool:
        return await run_state(sessions, run_id) == "completed"

    return check


async def test_every_eligible_recipient_is_sent_once_and_the_run_completes(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [*PHONES, None])
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta()
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    stored = await messages(sessions)
    assert all(fake.sends_to(p) == 1 for p in PHONES)
    assert len(fake.sends) == len(PHONES)
    for phone in PHONES:
        row = stored[phone]
        assert row["state"] == "sent"
        assert row["provider_message_id"].startswith("wamid.")
        assert row["wa_id"] == phone.lstrip("+")
        assert row["sent_at"] is not None
        assert row["attempt_count"] == 1
    callbacks = {body["biz_opaque_callback_data"] for _, body in fake.sends}
    async with sessions() as session:
        ids = set(map(str, await session.scalars(text("SELECT id FROM invite_message"))))
    assert callbacks <= ids


async def test_a_batch_no_send_can_add_to_is_written_without_waiting_for_the_flush(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Results wait up to flush_seconds for others to share their transaction, but not when no
    send is left in flight: the last result of a run (or a lone one) is written at once."""
    world = seed_world(database_url, PHONES[:1])
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta()
    async with running(sessions, fake, flush_seconds=60.0):
        await wait_for(completed(sessions, run.id), timeout=10, what="run completed")
    assert (await messages(sessions))[PHONES[0]]["state"] == "sent"


async def test_transient_errors_are_retried_then_sent(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:3])
    run = (await precheck_and_start(sessions, world)).run

    def flaky(body: dict[str, Any], before: int) -> httpx.Response:
        return graph_error(131000) if before < 2 else accept(body, before)

    fake = FakeMeta(script=flaky)
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    stored = await messages(sessions)
    assert {p: (r["state"], r["attempt_count"]) for p, r in stored.items()} == {
        p: ("sent", 3) for p in PHONES[:3]
    }
    assert all(r["error_code"] is None for r in stored.values())


async def test_transient_errors_past_the_attempt_limit_fail_retries_exhausted(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:1])
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta(script=lambda body, n: graph_error(131016, 400))
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    row = (await messages(sessions))[PHONES[0]]
    assert (row["state"], row["rejection_reason"], row["error_code"]) == (
        "failed",
        "retries_exhausted",
        131016,
    )
    assert fake.sends_to(PHONES[0]) == 3


async def test_terminal_errors_fail_with_the_code_and_131050_joins_do_not_message(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:3])
    run = (await precheck_and_start(sessions, world)).run
    codes = {PHONES[0].lstrip("+"): 131026, PHONES[1].lstrip("+"): 131050}

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        code = codes.get(body["to"])
        return graph_error(code) if code else accept(body, before)

    fake = FakeMeta(script=script)
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    stored = await messages(sessions)
    assert (stored[PHONES[0]]["state"], stored[PHONES[0]]["error_code"]) == ("failed", 131026)
    assert stored[PHONES[0]]["rejection_reason"] == "provider_rejected"
    assert (stored[PHONES[1]]["state"], stored[PHONES[1]]["error_code"]) == ("failed", 131050)
    assert stored[PHONES[2]]["state"] == "sent"
    assert len(fake.sends) == 3
    with Seeder(database_url) as seed:
        assert seed.rows("SELECT phone_e164, source FROM do_not_message_entry") == [
            (PHONES[1], "provider_error_131050")
        ]
        assert seed.rows(
            "SELECT action, details->>'phone_e164' FROM audit_entry WHERE action = 'dnm.add'"
        ) == [("dnm.add", PHONES[1])]


async def test_an_opt_out_error_blocks_the_phone_in_every_workspace_of_the_sender(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The scope rule: an opt-out on a sender number holds for every workspace sending from it;
    a workspace with another number is not touched."""
    world = seed_world(database_url, PHONES[:1])
    with Seeder(database_url) as seed:
        sibling = seed.workspace(sender=DEFAULT_SENDER)
        elsewhere = seed.workspace(sender="100000000000999")
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta(script=lambda body, before: graph_error(131050))
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    with Seeder(database_url) as seed:
        blocked = seed.rows(
            "SELECT workspace_id, phone_e164, source FROM do_not_message_entry ORDER BY 1"
        )
        audited = seed.rows(
            "SELECT workspace_id, details->>'run_id' FROM audit_entry WHERE action = 'dnm.add'"
        )
    assert sorted(blocked) == sorted(
        [(ws, PHONES[0], "provider_error_131050") for ws in (world.workspace_id, sibling)]
    )
    assert elsewhere not in {ws for ws, _, _ in blocked}
    assert sorted(audited) == sorted([(ws, str(run.id)) for ws in (world.workspace_id, sibling)])


async def test_a_halt_error_pauses_the_run_and_resume_continues(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:5])
    run = (await precheck_and_start(sessions, world)).run
    token_expired = True

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        return (
            graph_error(190, 401, "Access token has expired")
            if token_expired
            else accept(body, before)
        )

    fake = FakeMeta(script=script)
    async with running(sessions, fake, claim_batch_size=2, concurrency=2):

        async def paused() -> bool:
            return await run_state(sessions, run.id) == "paused"

        await wait_for(paused, what="run paused")
        async with sessions() as session:
            reason = await session.scalar(
                text("SELECT pause_reason FROM invite_send_run WHERE id = :id"), {"id": run.id}
            )
            pending = await session.scalar(
                text("SELECT count(*) FROM invite_message WHERE state = 'queued'")
            )
        assert "190" in str(reason)
        assert pending == 5  # nothing was sent: every message is queued again
        calls_while_paused = len(fake.sends)
        assert calls_while_paused <= 2
        token_expired = False
        await resume_run(sessions, run_command(world.parent_admin, str(run.id)))
        await wait_for(completed(sessions, run.id), what="run completed after resume")
    stored = await messages(sessions)
    assert {r["state"] for r in stored.values()} == {"sent"}
    # each recipient was accepted exactly once; only the calls refused with 190 came twice
    assert len(fake.sends) == 5 + calls_while_paused
    assert all(1 <= fake.sends_to(p) <= 2 for p in PHONES[:5])


async def test_ambiguous_outcomes_are_never_resent_and_fail_after_the_window(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:3])
    run = (await precheck_and_start(sessions, world)).run
    answers: dict[str, httpx.Response | Exception] = {
        PHONES[0].lstrip("+"): httpx.ReadTimeout("slow"),
        PHONES[1].lstrip("+"): graph_error(131000, 500),
    }

    def script(body: dict[str, Any], before: int) -> httpx.Response | Exception:
        return answers.get(body["to"]) or accept(body, before)

    fake = FakeMeta(script=script)
    async with running(sessions, fake, outcome_unknown_seconds=1.0):

        async def two_unresolved() -> bool:
            stored = await messages(sessions)
            return stored[PHONES[2]]["state"] == "sent" and len(fake.sends) == 3

        await wait_for(two_unresolved, what="the sends")
        stored = await messages(sessions)
        assert stored[PHONES[0]]["state"] == "sending"
        assert stored[PHONES[1]]["state"] == "sending"
        assert await run_state(sessions, run.id) == "dispatching"  # not done while unresolved
        await wait_for(completed(sessions, run.id), what="run completed after the window")
    stored = await messages(sessions)
    for phone in PHONES[:2]:
        assert (stored[phone]["state"], stored[phone]["rejection_reason"]) == (
            "failed",
            "outcome_unknown",
        )
        assert fake.sends_to(phone) == 1


async def test_a_phone_blocked_after_the_precheck_is_blocked_at_send_time(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:2])
    run = (await precheck_and_start(sessions, world)).run
    with Seeder(database_url) as seed:
        seed.do_not_message(world.workspace_id, PHONES[0])
    fake = FakeMeta()
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    stored = await messages(sessions)
    assert (stored[PHONES[0]]["state"], stored[PHONES[0]]["rejection_reason"]) == (
        "blocked",
        "do_not_message",
    )
    assert fake.sends_to(PHONES[0]) == 0
    assert stored[PHONES[1]]["state"] == "sent"


async def test_131056_backs_off_one_recipient_without_holding_up_the_others(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:4])
    run = (await precheck_and_start(sessions, world)).run
    slow = PHONES[0].lstrip("+")

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        return graph_error(131056) if body["to"] == slow and before == 0 else accept(body, before)

    fake = FakeMeta(script=script)
    async with running(sessions, fake):

        async def others_sent() -> bool:
            stored = await messages(sessions)
            return all(stored[p]["state"] == "sent" for p in PHONES[1:4])

        await wait_for(others_sent, what="the other recipients")
        row = (await messages(sessions))[PHONES[0]]
        assert row["state"] == "queued"
        assert row["error_code"] == 131056
        assert row["next_attempt_at"] is not None  # 4^0 = 1 s later
        await wait_for(completed(sessions, run.id), what="run completed")
    first, second = [t for t, body in fake.sends if body["to"] == slow]
    assert second - first >= 0.9


async def test_the_reconciler_fails_a_crashed_replicas_sends_only_after_lease_and_window(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:2])
    await precheck_and_start(sessions, world)
    with Seeder(database_url) as seed:  # what a replica killed mid-call leaves behind
        seed.conn.execute(
            "UPDATE invite_message SET state = 'sending', attempt_count = 1,"
            " sending_at = now() - interval '1 hour', lease_owner = 'dead',"
            " lease_expires_at = now() + CASE WHEN phone_e164 = %s"
            " THEN interval '1 hour' ELSE interval '-1 second' END",
            (PHONES[0],),
        )
    await Reconciler(sessions, outcome_unknown_seconds=60).reconcile()
    stored = await messages(sessions)
    assert stored[PHONES[0]]["state"] == "sending"  # still leased
    assert (stored[PHONES[1]]["state"], stored[PHONES[1]]["rejection_reason"]) == (
        "failed",
        "outcome_unknown",
    )


async def test_130429_lowers_the_shared_rate_and_the_message_is_sent_later(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:2])
    run = (await precheck_and_start(sessions, world)).run
    throttled_once = False

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        nonlocal throttled_once
        if not throttled_once:
            throttled_once = True
            return graph_error(130429, title="Rate limit hit")
        return accept(body, before)

    fake = FakeMeta(script=script)
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    with Seeder(database_url) as seed:
        factor, throttled = seed.rows("SELECT rate_factor, throttled_count FROM sender_rate_limit")[
            0
        ]
    assert (factor, throttled) == (0.5, 1)
    stored = await messages(sessions)
    assert {r["state"] for r in stored.values()} == {"sent"}
    assert len(fake.sends) == 3  # the throttled one once more, never twice accepted


async def test_after_a_130429_slots_claimed_at_the_old_rate_are_given_back_not_sent(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # 150 messages at 200/s (180/s after headroom), slots claimed 0.4 s ahead: about 70 are
    # held with slots when the 10th call is refused with 130429. The lowered schedule pauses
    # the sender for a second (DISPATCH_THROTTLE_BACKOFF_SECONDS); the held ones are given back
    # instead of going out at the rate just refused, and are sent later on the new schedule.
    refused_at: list[float] = []

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        if len(fake.sends) == 10:
            refused_at.append(time.monotonic())
            return graph_error(130429, title="Rate limit hit")
        return accept(body, before)

    fake = FakeMeta(script=script)
    world = seed_world(database_url, [f"+1415779{n:04d}" for n in range(150)])
    run = (await precheck_and_start(sessions, world)).run
    rate = RateSettings(messages_per_second=200, headroom=0.1, horizon_seconds=0.4)
    given_back = sends_counted("throttled")
    async with running(sessions, fake, rate=rate, claim_batch_size=100, concurrency=200):
        await wait_for(completed(sessions, run.id), timeout=30, what="run completed")
    given_back = sends_counted("throttled") - given_back

    (refused,) = refused_at
    after = [at for at, _ in fake.sends if refused < at < refused + 0.9]
    # Only sends already marked (or written) before the worker recorded the 130429 go out in
    # the paused second: a few, not the ~70 held slots of the old schedule.
    assert len(after) <= 15, len(after)
    # The held slots given back are counted apart from slots a late worker lost (`released`):
    # about 60 of them here.
    assert given_back >= 10, given_back
    assert len(fake.sends) == 151  # every message once, the refused one twice
    assert {r["state"] for r in (await messages(sessions)).values()} == {"sent"}


async def test_a_claim_that_waited_for_a_throttles_lock_is_dated_after_it(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    # The worker gives back what it claimed before it recorded a 130429 (slots of the old
    # rate) and keeps what it claimed after. A claim that asks while the throttle holds the
    # sender's schedule row waits for it and takes slots of the lowered schedule: it must be
    # dated after the throttle, though it began before the throttle had committed.
    world = seed_world(database_url, PHONES[:6])
    run = (await precheck_and_start(sessions, world)).run
    (active,) = [r for r in await _active_runs(sessions) if r.id == run.id]
    limiter = SenderRateLimiter(RateSettings(messages_per_second=500, horizon_seconds=2.0))
    replica = ClaimSettings(owner="replica", claim_lease_seconds=30.0)
    saved, release = asyncio.Event(), asyncio.Event()

    async def save_then_hold(session: AsyncSession, *args: Any, **kwargs: Any) -> None:
        await save_schedule(session, *args, **kwargs)
        if kwargs.get("throttled"):  # the throttle's transaction stays open until released
            saved.set()
            await release.wait()

    monkeypatch.setattr(rate_limiter_module, "save_schedule", save_then_hold)
    before = await claim(sessions, limiter, active, 2, replica)
    throttling = asyncio.create_task(limiter.throttle(sessions, active.sender))
    await saved.wait()
    waiting = asyncio.create_task(claim(sessions, limiter, active, 2, replica))
    await asyncio.sleep(0.2)  # the claim has begun and waits for the row
    release.set()
    throttled_at = await throttling
    during = await waiting

    assert len(before.messages) == len(during.messages) == 2
    assert all(m.claimed_at is not None and m.claimed_at < throttled_at for m in before.messages)
    assert all(m.claimed_at is not None and m.claimed_at > throttled_at for m in during.messages)


async def test_a_throttle_that_fails_after_the_results_committed_never_writes_them_again(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    # The 130429's result is committed, then lowering the rate fails (the database blinked):
    # the batch is not written a second time, and the run still completes.
    written: Counter[uuid.UUID] = Counter()

    async def counted(session: AsyncSession, batch: list[Result], *args: Any) -> Any:
        written.update(r.message.id for r in batch)
        return await write_results(session, batch, *args)

    async def unreachable(*args: Any) -> datetime:
        raise psycopg.OperationalError("the database is away")

    monkeypatch.setattr(worker_module, "write_results", counted)
    monkeypatch.setattr(SenderRateLimiter, "throttle", unreachable)

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        if len(fake.sends) == 3:
            return graph_error(130429, title="Rate limit hit")
        return accept(body, before)

    fake = FakeMeta(script=script)
    world = seed_world(database_url, PHONES[:6])
    run = (await precheck_and_start(sessions, world)).run
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")

    assert len(fake.sends) == 7  # every message once, the refused one twice
    refused = [m for m, n in written.items() if n > 1]
    assert len(refused) == 1  # its 130429, then its acceptance
    assert written[refused[0]] == 2, written


async def test_a_run_started_while_the_worker_waits_is_claimed_on_its_signal(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    # The periodic refresh of active runs is pushed out of reach: only StartRun's signal
    # (NOTIFY at commit) can make the worker see the new run.
    monkeypatch.setattr(worker_module, "RUNS_REFRESH_SECONDS", 3600.0)
    world = seed_world(database_url, PHONES[:3])
    fake = FakeMeta()
    async with running(sessions, fake) as dispatcher:
        assert dispatcher.wakeups is not None
        await asyncio.wait_for(dispatcher.wakeups.listening.wait(), 10)
        await asyncio.sleep(0.3)  # the worker has loaded its (empty) list of runs
        run = (await precheck_and_start(sessions, world)).run
        await wait_for(completed(sessions, run.id), what="the new run sent")
    assert len(fake.sends) == 3


async def test_a_clean_run_is_sent_without_one_rollback(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    # psycopg forgets every statement it prepared on a connection that rolls back, so a loop
    # that read in a transaction ten times a second (the worker's refresh of its runs) kept
    # the worker's statements unprepared. Every read of the loops runs outside a transaction
    # or commits: counted are rollbacks that reach Postgres (a transaction was open).
    monkeypatch.setattr(worker_module, "RUNS_REFRESH_SECONDS", 0.01)
    monkeypatch.setattr(worker_module, "STATES_REFRESH_SECONDS", 0.01)
    world = seed_world(database_url, [f"+1415777{n:04d}" for n in range(40)])
    run = (await precheck_and_start(sessions, world)).run
    dialect = sessions.kw["bind"].sync_engine.dialect
    plain = dialect.do_rollback
    rolled_back: list[str] = []

    def counting(dbapi_connection: Any) -> None:
        status = dbapi_connection.driver_connection.info.transaction_status
        if status != psycopg.pq.TransactionStatus.IDLE:
            rolled_back.append(status.name)
        plain(dbapi_connection)

    monkeypatch.setattr(dialect, "do_rollback", counting)
    fake = FakeMeta(latency=0.05)
    async with running(sessions, fake):
        await wait_for(completed(sessions, run.id), what="run completed")
    assert len(fake.sends) == 40
    assert rolled_back == []


async def test_the_worker_claims_when_its_sender_has_slots_not_at_every_flush(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    # 150 messages at 200/s (180/s after headroom): claims of half a horizon's slots each.
    # A claim that took its sender's slots says when the next batch comes; the loop sleeps
    # until then, and written results (every 10 ms here) do not wake it to claim for nothing.
    took: list[bool] = []  # per claim: did it take messages?

    async def counted(*args: Any, **kwargs: Any) -> Any:
        result = await claim(*args, **kwargs)
        took.append(bool(result.messages))
        return result

    monkeypatch.setattr(worker_module, "claim", counted)
    phones = [f"+1415666{n:04d}" for n in range(150)]
    world = seed_world(database_url, phones)
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta()
    rate = RateSettings(messages_per_second=200, headroom=0.1, horizon_seconds=0.2)
    async with running(sessions, fake, rate=rate, concurrency=500, claim_batch_size=500):
        await wait_for(completed(sessions, run.id), what="run completed")

    assert len(fake.sends) == 150
    # Up to the last claim that took messages (after it, nothing is queued and the worker
    # polls until the run completes):
    sending = took[: len(took) - took[::-1].index(True)]
    taking, empty = sending.count(True), sending.count(False)
    assert taking >= 5  # batches of ~18 slots, not one claim for everything
    assert empty <= taking // 2, (taking, empty)


def sends_counted(outcome: str) -> float:
    """invites_dispatch_sends_total{outcome}, so far in this process."""
    return REGISTRY.get_sample_value("invites_dispatch_sends_total", {"outcome": outcome}) or 0.0


def lapsed_total() -> float:
    """The worker's lost schedule time for the default sender, so far in this process."""
    value = REGISTRY.get_sample_value(
        "invites_dispatch_schedule_lapsed_seconds_total", {"sender": DEFAULT_SENDER}
    )
    return value or 0.0


async def test_schedule_time_a_busy_worker_lost_is_counted_and_an_idle_senders_is_not(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # 120 messages at 200/s (180/s after headroom), at most 10 a claim: each claim leaves more
    # due. One send blocks the worker's event loop for 0.5 s, so its next claim comes after
    # the sender's claimed slots ran out: that lost time is counted. A second run of the same
    # sender, started after the first completed and a second of idleness, adds no more than
    # noise: the sender had nothing due meanwhile.
    fake = FakeMeta()

    def stall_once(body: dict[str, Any], before: int) -> httpx.Response:
        if len(fake.sends) == 30:
            time.sleep(0.5)  # blocking on purpose: the whole worker stalls
        return accept(body, before)

    fake.script = stall_once
    first = seed_world(database_url, [f"+1415777{n:04d}" for n in range(120)])
    second = seed_world(database_url, [f"+1415778{n:04d}" for n in range(20)])
    rate = RateSettings(messages_per_second=200, headroom=0.1, horizon_seconds=0.1)
    async with running(sessions, fake, rate=rate, claim_batch_size=10):
        before = lapsed_total()
        run = (await precheck_and_start(sessions, first)).run
        await wait_for(completed(sessions, run.id), what="the first run sent")
        stalled = lapsed_total() - before
        await asyncio.sleep(1.0)
        idle_before = lapsed_total()
        run = (await precheck_and_start(sessions, second)).run
        await wait_for(completed(sessions, run.id), what="the second run sent")
        after_idle = lapsed_total() - idle_before

    assert len(fake.sends) == 140
    assert stalled >= 0.25, stalled  # 0.5 s stalled, less the slots claimed ahead of it
    assert after_idle < 0.5, after_idle  # the idle second (and more) is not a loss


async def test_a_sender_whose_run_was_paused_mid_send_is_idle_not_behind(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The run is paused (the token expired) while each claim still leaves messages due, and
    # resumed a second later. That second was idle, not schedule time the worker lost.
    world = seed_world(database_url, [f"+1415779{n:04d}" for n in range(200)])
    token_expired = False

    def script(body: dict[str, Any], before: int) -> httpx.Response:
        if token_expired:
            return graph_error(190, 401, "Access token has expired")
        return accept(body, before)

    fake = FakeMeta(script=script)
    rate = RateSettings(messages_per_second=200, headroom=0.1, horizon_seconds=0.1)
    async with running(sessions, fake, rate=rate, claim_batch_size=10):
        run = (await precheck_and_start(sessions, world)).run
        await wait_for(lambda: len(fake.sends) >= 40, what="the first sends")
        token_expired = True

        async def paused() -> bool:
            return await run_state(sessions, run.id) == "paused"

        await wait_for(paused, what="the run paused")
        await asyncio.sleep(1.0)
        token_expired = False
        before = lapsed_total()
        await resume_run(sessions, run_command(world.parent_admin, str(run.id)))
        await wait_for(completed(sessions, run.id), what="the run sent after its resume")
        lapsed = lapsed_total() - before

    assert lapsed < 0.5, lapsed  # counted as lost, the paused second (and more) would show


async def test_a_senders_lapse_is_counted_while_another_of_its_runs_has_nothing_due(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Two runs of one sender: the first has nothing due (its one message's outcome is unknown,
    # so it stays `sending` and the run open), the second has 120 messages. Every claim round
    # of the sender meets the first run's empty claim before the second's. The worker stalls
    # for 0.5 s mid-way: that loss is the second run's, and is counted.
    stalled_once: list[bool] = []
    idle = seed_world(database_url, ["+14157760000"])
    busy = seed_world(database_url, [f"+1415776{n:04d}" for n in range(1, 121)])

    def script(body: dict[str, Any], before: int) -> httpx.Response | Exception:
        if body["to"] == "14157760000":
            return httpx.ReadTimeout("no answer")  # ambiguous: `sending` until settled
        if len(fake.sends) == 40 and not stalled_once:
            stalled_once.append(True)
            time.sleep(0.5)  # blocking on purpose: the whole worker stalls
        return accept(body, before)

    fake = FakeMeta(script=script)
    first = (await precheck_and_start(sessions, idle)).run
    second = (await precheck_and_start(sessions, busy)).run
    rate = RateSettings(messages_per_second=200, headroom=0.1, horizon_seconds=0.1)
    async with running(sessions, fake, rate=rate, claim_batch_size=10):
        before = lapsed_total()
        await wait_for(completed(sessions, second.id), what="the second run sent")
        lapsed = lapsed_total() - before
    assert await run_state(sessions, first.id) != "completed"
    assert lapsed >= 0.25, lapsed  # 0.5 s stalled, less the slots claimed ahead of it


async def test_messages_whose_marks_come_due_together_share_one_statement(
    database_url: str, sessions: async_sessionmaker[AsyncSession], monkeypatch: Any
) -> None:
    # 150 messages at 500/s (450/s after headroom: a slot every 2.2 ms) on a 50 ms grid of
    # marks: every message whose mark comes due within one step of it is marked by the same
    # statement, so a mark takes about 22 messages. Without the grid each mark took only the
    # messages asked for while the one before was in flight: about two here.
    marked: list[int] = []  # per mark statement: how many messages it asked for

    async def counted(connection: Any, ids: list[uuid.UUID], *args: Any) -> Any:
        marked.append(len(ids))
        return await mark_attempting(connection, ids, *args)

    monkeypatch.setattr(worker_module, "mark_attempting", counted)
    world = seed_world(database_url, [f"+1415888{n:04d}" for n in range(150)])
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta()
    async with running(
        sessions, fake, concurrency=500, claim_batch_size=500, mark_group_seconds=0.05
    ):
        await wait_for(completed(sessions, run.id), what="run completed")

    assert len(fake.sends) == 150
    assert sum(marked) >= 150  # more when a slot was missed and its message marked again
    # 150 slots span 0.33 s: seven to nine statements measured (a claim's first slots may come
    # due at once, a late wake-up may split a step); 65 without the grid
    assert len(marked) <= 20, marked


async def test_slots_are_dated_after_the_schedule_lock_was_granted_not_before_the_wait(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Another replica holds the sender's schedule without changing it (a claim that found no
    # slot, or nothing to send). The clock the waiting claim computes slots against must be read
    # once the lock is granted: read before the wait, its first slots would already be past
    # when it gets them, and a replica that trusted them would send them all at once.
    with Seeder(database_url) as seed:
        seed.conn.execute(
            "INSERT INTO sender_rate_limit (sender_phone_number_id) VALUES (%s)", (DEFAULT_SENDER,)
        )
    holding = asyncio.Event()

    async def hold_the_lock() -> datetime:
        async with sessions() as session, session.begin():
            await lock_schedule(session, DEFAULT_SENDER)
            holding.set()
            await asyncio.sleep(0.4)
            released: datetime = await session.scalar(text("SELECT clock_timestamp()"))
            return released

    holder = asyncio.create_task(hold_the_lock())
    await holding.wait()
    async with sessions() as session, session.begin():
        locked = await lock_schedule(session, DEFAULT_SENDER)
    assert locked.db_now >= await holder


async def test_cancel_during_a_run_stops_sending_and_the_run_is_cancelled(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta(latency=0.05)
    async with running(sessions, fake, claim_batch_size=2, concurrency=2):
        await wait_for(lambda: len(fake.sends) >= 2, what="the first sends")
        await cancel_run(sessions, run_command(world.parent_admin, str(run.id)))
        sends_at_cancel = len(fake.sends)
        await asyncio.sleep(0.5)
    assert len(fake.sends) <= sends_at_cancel + 2  # at most what was already claimed
    stored = await messages(sessions)
    states = [r["state"] for r in stored.values()]
    assert set(states) <= {"sent", "cancelled"}
    assert states.count("sent") == len(fake.sends)
    assert await run_state(sessions, run.id) == "cancelled"


async def test_stopping_gives_claimed_but_unsent_messages_back(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    await precheck_and_start(sessions, world)
    fake = FakeMeta()
    # A schedule far ahead: everything claimed waits for its slot when the replica stops.
    with Seeder(database_url) as seed:
        seed.conn.execute(
            "INSERT INTO sender_rate_limit (sender_phone_number_id, next_slot_at)"
            " VALUES (%s, now() + interval '3 seconds')",
            (DEFAULT_SENDER,),
        )
    far_ahead = RateSettings(messages_per_second=100, horizon_seconds=5)
    async with running(sessions, fake, rate=far_ahead, poll_seconds=0.01) as dispatcher:

        async def claimed() -> bool:
            async with sessions() as session:
                return bool(
                    await session.scalar(
                        text(
                            "SELECT count(*) FROM invite_message"
                            " WHERE state = 'queued' AND lease_owner IS NOT NULL"
                        )
                    )
                )

        await wait_for(claimed, what="a claim")
        dispatcher.stop()
    stored = await messages(sessions)
    assert fake.sends == []
    assert {(r["state"], r["attempt_count"]) for r in stored.values()} == {("queued", 0)}
    with Seeder(database_url) as seed:
        assert seed.rows("SELECT count(*) FROM invite_message WHERE lease_owner IS NOT NULL") == [
            (0,)
        ]


async def test_a_crashed_replicas_claimed_but_unattempted_messages_are_sent_after_the_lease(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A claim only leases: a replica that dies before marking leaves `queued` rows, which
    another replica claims once the lease ran out and sends once (never outcome_unknown)."""
    world = seed_world(database_url, PHONES[:4])
    run = (await precheck_and_start(sessions, world)).run
    active = [r for r in await _active_runs(sessions) if r.id == run.id]
    dead = ClaimSettings(owner="dead-replica", claim_lease_seconds=1.0)
    limiter = SenderRateLimiter(RateSettings(messages_per_second=500))
    taken = await claim(sessions, limiter, active[0], 4, dead)
    assert len(taken.messages) == 4  # ... and the replica dies here, before any mark
    with Seeder(database_url) as seed:
        assert seed.rows("SELECT DISTINCT state, lease_owner FROM invite_message") == [
            ("queued", "dead-replica")
        ]
    fake = FakeMeta()
    async with running(sessions, fake, outcome_unknown_seconds=0.2):
        await asyncio.sleep(0.5)
        assert fake.sends == []  # still leased to the dead replica
        await wait_for(completed(sessions, run.id), what="run completed")
    stored = await messages(sessions)
    assert {(r["state"], r["attempt_count"]) for r in stored.values()} == {("sent", 1)}
    assert sorted(fake.per_recipient.values()) == [1, 1, 1, 1]


def _answer_lost(sessions: async_sessionmaker[AsyncSession], *, committed: bool = False) -> Any:
    """A mark connection that goes away after the mark's statement ran and returned its rows,
    before Postgres committed it (rolled back); `committed`: the statement committed, and only
    its answer was lost."""

    @asynccontextmanager
    async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        lost = psycopg.OperationalError("server closed the connection")
        async with driver_autocommit(sessions) as driver:
            if committed:
                yield driver
            else:
                async with driver.transaction():
                    yield driver
                    raise lost  # not committed: rolled back
        raise lost

    return connection


async def _two_claimed(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> tuple[uuid.UUID, list[ClaimedMessage]]:
    """A started run of two messages, both claimed (leased, still queued) by "replica"."""
    world = seed_world(database_url, PHONES[:2])
    run = (await precheck_and_start(sessions, world)).run
    active = [r for r in await _active_runs(sessions) if r.id == run.id]
    limiter = SenderRateLimiter(RateSettings(messages_per_second=500))
    replica = ClaimSettings(owner="replica", claim_lease_seconds=30.0)
    taken = await claim(sessions, limiter, active[0], 2, replica)
    assert len(taken.messages) == 2
    return run.id, taken.messages


async def _mark_all(marker: Marker, messages: list[ClaimedMessage]) -> list[Any]:
    """Mark every message through a running `marker`; the lease of each (None: not marked)."""
    marking = asyncio.create_task(marker.run())
    try:
        return list(await asyncio.gather(*(marker.mark(m.id, m.lease) for m in messages)))
    finally:
        marking.cancel()


async def test_a_mark_that_did_not_commit_is_not_sent(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The mark's UPDATE ran and returned its rows, but Postgres never committed it (a crash):
    the messages must not be sent, for they are still `queued` under their claim lease and
    will be claimed and sent again. (Seen as one recipient sent twice across a Postgres
    restart, when a mark's rows were trusted before its commit: once before the crash, once
    after.)"""
    _, taken = await _two_claimed(database_url, sessions)
    assert await _mark_all(Marker(_answer_lost(sessions), "replica", TEN_SECONDS), taken) == [
        None,
        None,
    ]
    with Seeder(database_url) as seed:
        assert seed.rows("SELECT DISTINCT state, attempt_count FROM invite_message") == [
            ("queued", 0)
        ]
    leases = await _mark_all(
        Marker(partial(driver_autocommit, sessions), "replica", TEN_SECONDS), taken
    )  # it answers again
    assert all(lease is not None for lease in leases)
    with Seeder(database_url) as seed:
        assert seed.rows("SELECT DISTINCT state, attempt_count FROM invite_message") == [
            ("sending", 1)
        ]


async def test_a_mark_that_committed_though_its_answer_was_lost_is_given_back_not_left_sending(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A mark reached Postgres and committed, but its answer was lost (the server went down
    right then): the worker does not send (it cannot know), and gives the messages back under
    the lease the mark gave them, which it computes (the claim's + the extension) since the
    answer never came, so they go back to `queued` with their attempt, to be sent once, instead
    of staying `sending` until the reconciler fails them outcome_unknown without any call made.
    (Seen as 2 of 800 outcome_unknown, never sent, in the Postgres-restart test.)"""
    run_id, taken = await _two_claimed(database_url, sessions)
    marker = Marker(_answer_lost(sessions, committed=True), "replica", TEN_SECONDS)
    assert await _mark_all(marker, taken) == [None, None]  # not to be sent
    with Seeder(database_url) as seed:  # ... yet the mark took effect
        assert seed.rows("SELECT DISTINCT state, attempt_count FROM invite_message") == [
            ("sending", 1)
        ]
    results = [Result(m, Released(possible_lease=marker.uncertain.pop(m.id))) for m in taken]
    policy = RetryPolicy(max_attempts=3, backoff=Backoff(0.1, 1.0))
    async with sessions() as session, session.begin():
        await write_results(session, results, policy, "replica", random.Random(1))
    with Seeder(database_url) as seed:
        assert seed.rows(
            "SELECT DISTINCT state, attempt_count, lease_owner FROM invite_message"
        ) == [("queued", 0, None)]
    fake = FakeMeta()
    async with running(sessions, fake):
        await wait_for(completed(sessions, run_id), what="run completed")
    assert sorted(fake.per_recipient.values()) == [1, 1]


async def test_a_send_whose_window_passed_goes_back_to_queued_with_its_attempt(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The provider reports NotSent (the window passed before the request was written): the
    message is given back unsent, never ambiguous, and is sent in a later slot."""
    world = seed_world(database_url, PHONES[:3])
    run = (await precheck_and_start(sessions, world)).run
    fake = FakeMeta()
    provider = fake.provider()
    refused: list[uuid.UUID] = []

    class WindowPassesOnce:
        name = "meta"

        async def send_template(
            self, send: TemplateSend, *, not_after: float | None = None
        ) -> SendOutcome:
            assert not_after is not None
            if send.message_id not in refused:
                refused.append(send.message_id)
                return NotSent("the pool was full past the window")
            return await provider.send_template(send, not_after=not_after)

    dispatcher = Dispatcher(sessions, WindowPassesOnce(), dispatcher_config())
    async with RunningDispatcher(dispatcher):
        await wait_for(completed(sessions, run.id), what="run completed")
    stored = await messages(sessions)
    assert {(r["state"], r["attempt_count"]) for r in stored.values()} == {("sent", 1)}
    assert len(refused) == 3
    assert sorted(fake.per_recipient.values()) == [1, 1, 1]


async def test_a_provider_outage_holds_the_sender_probes_and_resumes_by_itself(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Refused connections past the threshold stop new sends for the sender (the run shows
    why and when the next probe goes), one probe goes out per back-off step, and the first
    answer resumes sending. Refused messages are retried; nobody is lost or sent twice."""
    phones = [f"+1415556{n:04d}" for n in range(40)]
    world = seed_world(database_url, phones)
    run = (await precheck_and_start(sessions, world)).run
    down = True

    def script(body: dict[str, Any], before: int) -> httpx.Response | Exception:
        if down:
            return httpx.ConnectError("connection refused")
        return accept(body, before)

    fake = FakeMeta(script=script)
    policy = OutagePolicy(threshold=3, probe_seconds=0.3, probe_cap_seconds=0.6)
    slow = RateSettings(messages_per_second=20, horizon_seconds=0.2)
    retry = RetryPolicy(max_attempts=10, backoff=Backoff(0.05, 0.1))
    async with running(sessions, fake, rate=slow, outage=policy, retry=retry):

        async def outage_shown() -> bool:
            status = await get_run_status(sessions, world.viewer, run.id)
            return status.outage is not None

        await wait_for(outage_shown, what="the outage on the run")
        status = await get_run_status(sessions, world.viewer, run.id)
        assert status.outage is not None
        assert "3 failures in a row" in status.outage.reason
        assert "ConnectError" in status.outage.reason
        at_trip = len(fake.sends)
        await asyncio.sleep(2.0)  # 40 sends' worth of slots at 20/s
        during = len(fake.sends) - at_trip
        down = False
        await wait_for(completed(sessions, run.id), timeout=20, what="run completed")
    # in flight at the trip (a slot or two) plus one probe per step (0.3, 0.6, 0.6, ...)
    assert 1 <= during <= 2 + 5, during
    stored = await messages(sessions)
    assert {r["state"] for r in stored.values()} == {"sent"}
    assert all(n >= 1 for n in fake.per_recipient.values())
    accepted = Counter(body["to"] for _, body in fake.sends[at_trip + during :])
    assert max(accepted.values()) == 1
    async with sessions() as session, session.begin():
        assert (await lock_schedule(session, DEFAULT_SENDER)).outage is None
    print(f"outage: {at_trip} refused before the trip, {during} requests in 2 s of outage")
