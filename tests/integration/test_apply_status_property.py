"""Property: through the real SQL path, any interleaving, duplication and batching of messages'
statuses ends in exactly what the pure rule (`domain.lifecycle.replay`) answers."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.db.engine import make_engine, make_sessions
from common.vocabulary import ApplyOutcome, MessageState
from dispatch_service.domain.lifecycle import (
    Lifecycle,
    ProviderError,
    ProviderStatus,
    StatusUpdate,
    replay,
)
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, apply_status
from tests.status_support import SENDER, seed_run

T0 = datetime(2030, 6, 1, tzinfo=UTC)
SEED_SENT_AT = datetime(2030, 1, 1, tzinfo=UTC)  # what seed_run stores as the accept time
STATUSES = ["sent", "delivered", "read", "failed", "played"]


@dataclass(frozen=True)
class Target:
    """One seeded message: how statuses find it and what it starts as."""

    message_id: uuid.UUID
    wamid: str
    by_callback: bool  # no provider id stored yet: statuses match it through callback data
    initial: Lifecycle


def report(status: str, seconds: int) -> ProviderStatus:
    errors = (ProviderError(131026, "Message undeliverable", "d"),) if status == "failed" else ()
    return ProviderStatus(status, T0 + timedelta(seconds=seconds), errors)


def seed(database_url: str, sent: int, sending: int) -> list[Target]:
    targets = []
    if sent:
        run = seed_run(database_url, sent)
        targets += [
            Target(mid, wamid or "", False, Lifecycle(MessageState.SENT, sent_at=SEED_SENT_AT))
            for mid, wamid in zip(run.message_ids, run.wamids, strict=True)
        ]
    if sending:
        run = seed_run(
            database_url, sending, state="sending", with_wamids=False, phone_base=15550200000
        )
        targets += [
            Target(mid, f"wamid.cb.{mid.hex}", True, Lifecycle(MessageState.SENDING))
            for mid in run.message_ids
        ]
    return targets


def final_row(database_url: str, message_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(
            "SELECT state, sent_at, delivered_at, read_at, failed_at, error_code,"
            " rejection_reason FROM invite_message WHERE id = %s",
            [message_id],
        )
        row = cursor.fetchone()
        assert row is not None
        return dict(zip([c.name for c in cursor.description or ()], row, strict=True))


def expected_row(message: Lifecycle) -> dict[str, Any]:
    return {
        "state": message.state.value,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
        "failed_at": message.failed_at,
        "error_code": message.error.code if message.error else None,
        "rejection_reason": message.rejection_reason.value if message.rejection_reason else None,
    }


async def apply_batches(database_url: str, batches: list[list[StatusUpdate]]) -> list[ApplyOutcome]:
    engine = make_engine(database_url, pool_size=2, max_overflow=0)
    try:
        outcomes: list[ApplyOutcome] = []
        for batch in batches:
            result = await apply_status(ApplyStatusCommand(statuses=batch), make_sessions(engine))
            outcomes += result.outcomes
        return outcomes
    finally:
        await engine.dispose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_sql_path_reproduces_the_rule_for_any_arrival(
    database_url: str, data: st.DataObject
) -> None:
    targets = seed(database_url, data.draw(st.integers(1, 2)), data.draw(st.integers(0, 1)))
    arrivals: list[tuple[int, ProviderStatus]] = []
    for n, _ in enumerate(targets):
        names = data.draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6))
        arrivals += [(n, report(s, data.draw(st.integers(0, 600)))) for s in names]
    arrivals = data.draw(st.permutations(arrivals))
    updates = [
        StatusUpdate(
            provider_message_id=targets[n].wamid,
            report=status,
            phone_number_id=SENDER,
            recipient_id="15550100000",
            callback_data=str(targets[n].message_id) if targets[n].by_callback else "",
        )
        for n, status in arrivals
    ]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(updates) - 1)), max_size=4)))
    batches = [updates[a:b] for a, b in zip([0, *cuts], [*cuts, len(updates)], strict=True)]
    outcomes = asyncio.run(apply_batches(database_url, [b for b in batches if b]))

    expected_outcomes: dict[int, list[ApplyOutcome]] = {}
    for n, target in enumerate(targets):
        mine = [s for m, s in arrivals if m == n]
        final, expected_outcomes[n] = replay(target.initial, mine)
        assert final_row(database_url, target.message_id) == expected_row(final)
    for n, _ in enumerate(targets):
        got = [o for (m, _), o in zip(arrivals, outcomes, strict=True) if m == n]
        assert got == expected_outcomes[n]
