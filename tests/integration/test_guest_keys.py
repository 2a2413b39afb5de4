"""The keys among the rows an import writes are deferred by the import and still checked.

The import checks a batch's keys while it plans the next (persistence/guests.py, GUEST_KEYS;
migration 0024): a key the planner broke must fail the import as it failed the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.persistence.guests import GUEST_KEYS, check_guest_keys, defer_guest_keys
from tests.integration.dispatch_support import seed_world

GUEST_TABLES = ("person", "guest_identity", "guest_unit", "guest_unit_membership", "guest_unit_tag")
MEMBERSHIP = text(
    "INSERT INTO guest_unit_membership (workspace_id, guest_unit_id, person_id, active)"
    " SELECT :ws, :unit, id, false FROM person WHERE workspace_id = :ws LIMIT 1"
)


def test_the_import_defers_every_key_among_the_guest_tables_and_only_those(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        keys = conn.execute(
            "SELECT conname FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)",
            [list(GUEST_TABLES)],
        ).fetchall()
        deferrable = {
            name
            for (name,) in conn.execute("SELECT conname FROM pg_constraint WHERE condeferrable")
        }
    assert {name for (name,) in keys} == set(GUEST_KEYS)
    assert deferrable == set(GUEST_KEYS)


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


async def test_a_deferred_key_is_checked_when_the_import_asks(
    database_url: str, session: AsyncSession
) -> None:
    ws = seed_world(database_url, ["+14155550101"]).workspace_id
    params = {"ws": ws, "unit": uuid.uuid4()}  # no such household
    async with session.begin():
        await defer_guest_keys(session)
        await session.execute(MEMBERSHIP, params)  # not checked yet
        with pytest.raises(IntegrityError, match="fk_guest_unit_membership_guest_unit_id"):
            await check_guest_keys(session)


async def test_a_deferred_key_is_checked_at_the_latest_at_the_commit(
    database_url: str, session: AsyncSession
) -> None:
    ws = seed_world(database_url, ["+14155550101"]).workspace_id
    await session.begin()
    await defer_guest_keys(session)
    await session.execute(MEMBERSHIP, {"ws": ws, "unit": uuid.uuid4()})
    with pytest.raises(IntegrityError, match="fk_guest_unit_membership_guest_unit_id"):
        await session.commit()
    await session.rollback()
    async with session.begin():  # and nothing of it was stored
        stored = await session.execute(
            text("SELECT count(*) FROM guest_unit_membership WHERE workspace_id = :ws"), {"ws": ws}
        )
        assert stored.scalar_one() == 1  # the world's own household's


async def test_outside_an_import_a_statement_checks_its_keys_as_it_ends(
    database_url: str, session: AsyncSession
) -> None:
    ws = seed_world(database_url, ["+14155550101"]).workspace_id
    async with session.begin():
        with pytest.raises(IntegrityError, match="fk_guest_unit_membership_guest_unit_id"):
            await session.execute(MEMBERSHIP, {"ws": ws, "unit": uuid.uuid4()})
