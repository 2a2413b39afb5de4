"""Several ingestors (concurrent tasks, separate connections) apply conflicting, shuffled and
duplicated statuses for the same messages at once, while a dispatcher stores provider ids of
messages whose statuses arrived first. Every message must end exactly where the rule says."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import MessageState
from dispatch_service.domain.lifecycle import (
    Lifecycle,
    ProviderError,
    ProviderStatus,
    StatusUpdate,
    replay,
)
from dispatch_service.persistence.status import apply_orphaned_statuses, is_retryable
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, apply_status
from tests.status_support import SENDER, seed_run

T0 = datetime(2030, 6, 1, tzinfo=UTC)
SEED_SENT_AT = datetime(2030, 1, 1, tzinfo=UTC)
ACCEPTED_AT = datetime(2030, 5, 1, tzinfo=UTC)
INGESTORS = 4
ROUNDS = 6


def history(rng: random.Random) -> list[ProviderStatus]:
    """A consistent history (its final answer does not depend on arrival order)."""
    times = sorted(rng.sample(range(1, 10_000), 3))
    at = [T0 + timedelta(seconds=t) for t in times]
    ending = rng.choice(["delivered", "read", "read_without_delivered", "failed", "failed_late"])
    statuses = [ProviderStatus("sent", at[0])]
    if ending in ("delivered", "read", "failed_late"):
        statuses.append(ProviderStatus("delivered", at[1]))
    if ending.startswith("read"):
        statuses.append(ProviderStatus("read", at[2]))
    if ending.startswith("failed"):
        statuses.append(ProviderStatus("failed", at[2], (ProviderError(131026, "undeliverable"),)))
    return statuses


async def store_provider_id(
    sessions: async_sessionmaker[AsyncSession], message_id: uuid.UUID, wamid: str
) -> None:
    """What the dispatcher does when Meta accepted a send: store the id, then the orphan hook."""
    for _ in range(10):
        try:
            async with sessions() as session, session.begin():
                await session.execute(
                    text(
                        "UPDATE invite_message SET provider_message_id = :wamid, state = 'sent',"
                        " sent_at = :at WHERE id = :id AND state = 'sending'"
                    ),
                    {"wamid": wamid, "at": ACCEPTED_AT, "id": message_id},
                )
                await apply_orphaned_statuses(session, [message_id])
            return
        except Exception as error:
            if not is_retryable(error):
                raise
    raise AssertionError("the dispatcher's transaction kept conflicting")


async def ingest(
    sessions: async_sessionmaker[AsyncSession], updates: list[StatusUpdate], rng: random.Random
) -> None:
    while updates:
        size = rng.randint(1, 6)
        batch, updates = updates[:size], updates[size:]
        await apply_status(ApplyStatusCommand(statuses=batch), sessions)
        await asyncio.sleep(0)


def rows(database_url: str, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT id, state, sent_at, delivered_at, read_at, failed_at, error_code"
            " FROM invite_message WHERE run_id = ANY(%s)",
            [run_ids],
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in found}


def as_row(message: Lifecycle) -> tuple[object, ...]:
    code = message.error.code if message.error else None
    return (
        message.state.value,
        message.sent_at,
        message.delivered_at,
        message.read_at,
        message.failed_at,
        code,
    )


async def test_concurrent_ingestors_and_a_dispatcher_end_in_the_rules_answer(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    rng = random.Random(20301)
    run_ids: list[uuid.UUID] = []
    expected: dict[uuid.UUID, Lifecycle] = {}
    for round_ in range(ROUNDS):
        sent = seed_run(database_url, 12, phone_base=15550100000 + 1000 * round_)
        late = seed_run(
            database_url,
            4,
            state="sending",
            with_wamids=False,
            phone_base=15550500000 + 1000 * round_,
        )
        run_ids += [sent.run_id, late.run_id]
        updates: list[StatusUpdate] = []
        hooks = []
        for mid, wamid in zip(sent.message_ids, sent.wamids, strict=True):
            statuses = history(rng)
            expected[mid], _ = replay(Lifecycle(MessageState.SENT, sent_at=SEED_SENT_AT), statuses)
            updates += [StatusUpdate(wamid or "", s, SENDER, "15550100000") for s in statuses]
        for mid in late.message_ids:
            wamid = f"wamid.late.{mid.hex}"
            statuses = history(rng)
            start = Lifecycle(
                MessageState.SENT, sent_at=ACCEPTED_AT
            )  # after the dispatcher's write
            expected[mid], _ = replay(start, statuses)
            updates += [StatusUpdate(wamid, s, SENDER, "15550100000") for s in statuses]
            hooks.append(store_provider_id(sessions, mid, wamid))
        updates += rng.choices(updates, k=len(updates) // 2)  # redeliveries
        rng.shuffle(updates)
        shares = [updates[n::INGESTORS] for n in range(INGESTORS)]
        await asyncio.gather(*(ingest(sessions, share, rng) for share in shares), *hooks)

    found = rows(database_url, run_ids)
    assert {mid: found[mid] for mid in expected} == {mid: as_row(m) for mid, m in expected.items()}
    with psycopg.connect(database_url) as conn:
        (orphans, per_key) = conn.execute(
            "SELECT count(*) FILTER (WHERE outcome = 'orphaned'),"
            " max(n) FROM (SELECT outcome, count(*) OVER (PARTITION BY provider_message_id, status)"
            " AS n FROM status_event) e"
        ).fetchone() or (None, None)
    assert orphans == 0  # every early status was applied once its id was stored
    assert per_key == 1  # one event per (message, status), however often it was delivered
