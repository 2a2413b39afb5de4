"""The import's lookups keep their plans when the statistics are older than the import.

An import is one transaction: its tables grow far past what was last analysed. Joined to the
batch's keys, the household lookup then read every household of the workspace for each batch,
and the lookup of unphoned members every membership and every person (hash joins over
sequential scans), a cost growing with the workspace (persistence/guests.py, UNITS and
UNPHONED_MEMBERS). Each now probes an index per key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import TextClause, text

from common.db.engine import make_engine, make_sessions
from dispatch_service.persistence.guests import UNITS, UNPHONED_MEMBERS, without_jit
from tests.integration.dispatch_support import seed_world

HOUSEHOLDS = 20_000
GUEST_TABLES = ("guest_unit", "guest_unit_membership", "person")


def _explain(conn: psycopg.Connection[Any], statement: TextClause, params: dict[str, Any]) -> str:
    sql = statement.text
    for name in sorted(params, key=len, reverse=True):
        sql = sql.replace(f":{name}", f"%({name})s")
    return "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", params))


@pytest.fixture
def stale(database_url: str) -> tuple[uuid.UUID, list[str], list[str]]:
    """A workspace given 20,000 households (two people each, one of them without a valid
    phone) in tables never analysed since, as in an import's own transaction or a first import
    before autovacuum came by: its id, 1,600 of its household names and 40 household ids."""
    world = seed_world(database_url, ["+14155550101"])
    ws = world.workspace_id
    with psycopg.connect(database_url, autocommit=True) as conn:
        params = {"ws": ws, "n": HOUSEHOLDS}
        conn.execute(
            "INSERT INTO person (id, workspace_id, display_name, phone_status, phone_e164,"
            " raw_phone)"
            " SELECT md5('p' || i)::uuid, %(ws)s, 'Guest ' || i,"
            "        CASE WHEN i %% 2 = 0 THEN 'valid' ELSE 'malformed' END,"
            "        CASE WHEN i %% 2 = 0 THEN '+1415' || lpad(i::text, 7, '0') END, 'x'"
            " FROM generate_series(1, %(n)s * 2) AS i",
            params,
        )
        conn.execute(
            "INSERT INTO guest_unit (id, workspace_id, name, contact_person_id)"
            " SELECT md5('u' || i)::uuid, %(ws)s, 'Household ' || i, md5('p' || (2 * i))::uuid"
            " FROM generate_series(1, %(n)s) AS i",
            params,
        )
        conn.execute(
            "INSERT INTO guest_unit_membership (workspace_id, guest_unit_id, person_id)"
            " SELECT %(ws)s, md5('u' || ((i + 1) / 2))::uuid, md5('p' || i)::uuid"
            " FROM generate_series(1, %(n)s * 2) AS i",
            params,
        )
        names = [f"Household {i}" for i in range(1, HOUSEHOLDS, HOUSEHOLDS // 1600)][:1600]
        ids = [
            r[0].hex
            for r in conn.execute("SELECT md5('u' || i)::uuid FROM generate_series(1, 40) AS i")
        ]
    return ws, names, ids


def _reads_a_whole_table(plan: str) -> list[str]:
    return [
        line.strip()
        for line in plan.splitlines()
        if any(f"Seq Scan on {t} " in line for t in GUEST_TABLES)
        or "Bitmap Heap Scan on guest_unit " in line
    ]


def test_households_are_looked_up_by_name_and_id_not_by_workspace(
    database_url: str, stale: tuple[uuid.UUID, list[str], list[str]]
) -> None:
    ws, names, ids = stale
    with psycopg.connect(database_url, autocommit=True) as conn:
        plan = _explain(conn, UNITS, {"ws": ws, "names": json.dumps(names), "ids": "[]"})
        assert _reads_a_whole_table(plan) == [], plan
        plan = _explain(conn, UNITS, {"ws": ws, "names": "[]", "ids": json.dumps(ids)})
        assert _reads_a_whole_table(plan) == [], plan


def test_unphoned_members_are_read_per_household(
    database_url: str, stale: tuple[uuid.UUID, list[str], list[str]]
) -> None:
    _, _, ids = stale
    with psycopg.connect(database_url, autocommit=True) as conn:
        plan = _explain(conn, UNPHONED_MEMBERS, {"units": json.dumps(ids)})
        assert _reads_a_whole_table(plan) == [], plan
        rows = conn.execute(
            UNPHONED_MEMBERS.text.replace(":units", "%(units)s"), {"units": json.dumps(ids)}
        ).fetchall()
    # One member of each household has no valid phone: one row per household.
    assert len(rows) == len(ids)


async def test_an_import_transaction_plans_without_jit(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)  # one connection throughout
    try:
        sessions = make_sessions(engine)
        async with sessions() as session, session.begin():
            # JIT on first, so the check fails on a server configured without it too.
            await session.execute(text("SET LOCAL jit = on"))
            await without_jit(session)
            assert (await session.execute(text("SHOW jit"))).scalar_one() == "off"
        async with sessions() as session:
            # SET LOCAL: the connection goes back to the pool as it came (a plain SET would
            # leave it set for the connection's life, whatever the server's default).
            source = "SELECT source FROM pg_settings WHERE name = 'jit'"
            assert (await session.execute(text(source))).scalar_one() != "session"
    finally:
        await engine.dispose()
