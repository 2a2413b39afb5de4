"""The test databases audit every state change against the domain's transition tables.

This proves the audit can fail: a statement that moves a message outside the table (here, a
blocked message "read", which the table forbids) is recorded and rejected by the check every
test's teardown runs.
"""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.dispatch_support import precheck_and_start, seed_world
from tests.transition_audit import check_transitions, recorded_moves

PHONES = ["+14155550101", None]


async def test_a_move_outside_the_table_is_caught(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    await precheck_and_start(sessions, world)
    check_transitions(database_url)  # nothing moved outside the table so far

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE invite_message SET state = 'read' WHERE state = 'blocked'")
    assert ("invite_message", "blocked", "read") in recorded_moves(database_url)
    with pytest.raises(pytest.fail.Exception, match="blocked', 'read'"):
        check_transitions(database_url)

    with psycopg.connect(database_url, autocommit=True) as conn:  # let teardown pass
        conn.execute("DELETE FROM transition_audit.seen WHERE old_state = 'blocked'")
