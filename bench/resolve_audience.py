"""Benchmark: resolve a 100,000-household audience with the one recipient resolver.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/resolve_audience.py [--households 100000]

Creates a scratch database beside DATABASE_URL, migrates it, fills it with set-based SQL, times
`resolve_audience` (mode ALL and mode TAGS) and prints the figures; the scratch database is
dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import psycopg
from psycopg import sql

from common.db.engine import make_engine, make_sessions
from common.db.migrate import upgrade
from common.db.urls import with_database
from dispatch_service.persistence.audience import resolve_audience

FILL = """
INSERT INTO workspace (id, name, default_region, sender_phone_number_id)
VALUES (%(ws)s, 'bench', 'US', '1');
INSERT INTO event (id, workspace_id, name, starts_at) VALUES (%(ev)s, %(ws)s, 'bench', now());
INSERT INTO person (id, workspace_id, display_name, phone_status, phone_e164)
SELECT md5('p' || i)::uuid, %(ws)s, 'Guest ' || i, 'valid', '+1202' || lpad(i::text, 7, '0')
FROM generate_series(1, %(n)s) AS i;
INSERT INTO guest_unit (id, workspace_id, name, contact_person_id, side)
SELECT md5('u' || i)::uuid, %(ws)s, 'Household ' || lpad(i::text, 7, '0'), md5('p' || i)::uuid,
       CASE WHEN i %% 2 = 0 THEN 'bride' ELSE 'groom' END
FROM generate_series(1, %(n)s) AS i;
INSERT INTO guest_unit_membership (workspace_id, guest_unit_id, person_id)
SELECT %(ws)s, md5('u' || i)::uuid, md5('p' || i)::uuid FROM generate_series(1, %(n)s) AS i;
INSERT INTO tag (id, workspace_id, name) VALUES (%(tag)s, %(ws)s, 'family');
INSERT INTO guest_unit_tag (guest_unit_id, tag_id)
SELECT md5('u' || i)::uuid, %(tag)s FROM generate_series(1, %(n)s, 3) AS i;
INSERT INTO event_audience (event_id, workspace_id, mode, tags)
VALUES (%(ev)s, %(ws)s, 'all', '{family}');
ANALYZE;
"""


async def _time(url: str, workspace: uuid.UUID, event: uuid.UUID, label: str) -> None:
    engine = make_engine(url)
    sessions = make_sessions(engine)
    try:
        for attempt in range(3):
            async with sessions() as session:
                started = time.perf_counter()
                targets = await resolve_audience(session, workspace, event)
                elapsed = time.perf_counter() - started
            print(f"{label} run {attempt + 1}: {len(targets)} households in {elapsed:.3f} s")
    finally:
        await engine.dispose()


def main() -> None:
    """Fill a scratch database and print resolver timings."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=100_000)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_audience_{uuid.uuid4().hex[:8]}"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server, name)
    try:
        upgrade(url)
        ids = {"ws": uuid.uuid4(), "ev": uuid.uuid4(), "tag": uuid.uuid4(), "n": args.households}
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in filter(str.strip, FILL.split(";")):
                conn.execute(statement, ids)
        asyncio.run(_time(url, ids["ws"], ids["ev"], "mode ALL"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE event_audience SET mode = 'tags'")
        asyncio.run(_time(url, ids["ws"], ids["ev"], "mode TAGS"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
