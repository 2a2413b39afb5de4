"""Provider statuses rewrite their messages in place (migration 0025).

Postgres writes an UPDATE as a heap-only tuple, with no new index entry, only when no column an
index reads changes (its predicate included). The pending messages' partial indexes read
`dispatch_state`, not `state`, so that a status (sent, delivered, read: three per message) is such
an update.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import PENDING_STATES
from common.vocabulary import ApplyOutcome, MessageState, RejectionReason
from dispatch_service.domain.runs import PENDING_MESSAGE_STATES
from dispatch_service.persistence.state_sql import pending
from dispatch_service.persistence.status import apply_status_updates
from tests.integration.test_apply_status import update
from tests.status_support import seed_run

XACT_UPDATES = text(
    "SELECT pg_stat_get_xact_tuples_updated(CAST('invite_message' AS regclass)),"
    " pg_stat_get_xact_tuples_hot_updated(CAST('invite_message' AS regclass))"
)


def test_no_index_of_the_messages_reads_their_state(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        definitions = [
            r[0]
            for r in conn.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = CAST('invite_message' AS regclass)"
            )
        ]
    assert any("dispatch_state" in d for d in definitions), definitions
    # \b is a word boundary, and _ a word character: dispatch_state does not match.
    reading_state = [d for d in definitions if re.search(r"\bstate\b", d)]
    assert reading_state == []


def test_dispatch_state_is_the_state_while_it_is_pending() -> None:
    assert set(PENDING_STATES) == set(PENDING_MESSAGE_STATES)
    assert pending([MessageState.SENDING, MessageState.QUEUED], "m.dispatch_state") == (
        "m.dispatch_state IN ('queued', 'sending')"
    )
    # dispatch_state is NULL in every other state: asking it for one would find nothing.
    with pytest.raises(ValueError, match="not all pending"):
        pending([MessageState.QUEUED, MessageState.SENT])


def test_the_column_follows_every_state(database_url: str) -> None:
    run = seed_run(database_url, 1)
    with psycopg.connect(database_url) as conn:
        for state in MessageState:
            reason = (
                RejectionReason.PROVIDER_REJECTED.value if state is MessageState.BLOCKED else None
            )
            row = conn.execute(
                "UPDATE invite_message SET state = %s, rejection_reason = %s WHERE id = %s"
                " RETURNING dispatch_state",
                [state.value, reason, run.message_ids[0]],
            ).fetchone()
            assert row == (state.value if state in PENDING_STATES else None,), state
        conn.rollback()


async def test_provider_statuses_rewrite_their_messages_in_place(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    # Ten messages fill a fifth of their page: each new version has room beside the old one.
    run = seed_run(database_url, 10)
    for seconds, status in enumerate(("delivered", "read"), start=1):
        async with sessions() as session, session.begin():
            # The counters also hold what earlier transactions of the backend have not yet
            # reported (Postgres 15 sends them at most once a second): compare before and after.
            before = (await session.execute(XACT_UPDATES)).one()
            results = await apply_status_updates(
                session, [update(wamid, status, seconds) for wamid in run.wamids]
            )
            assert [r.outcome for r in results] == [ApplyOutcome.APPLIED] * 10
            after = (await session.execute(XACT_UPDATES)).one()
        assert (after[0] - before[0], after[1] - before[1]) == (10, 10), status
