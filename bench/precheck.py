"""Benchmark: PrecheckSend on a 100,000-household audience, in process, against its SQL ceiling.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/precheck.py [--households 100000] [--repeat 3]

Creates a scratch database beside DATABASE_URL, migrates it and fills it with set-based SQL: a
workspace with `--households` households whose contacts carry every eligibility outcome (about
1% each of no phone, malformed phone, inactive, shared phone, do-not-message and already
invited). Then, `--repeat` times each, it times:

* the PrecheckSend use case (resolution, eligibility and the stored snapshot, one transaction);
* the same-run ceiling: a bare `SELECT count(*)` over the same households joined to their
  contacts (what reading the audience once costs Postgres, with nothing evaluated or stored).

Prints each figure's median with its target (PrecheckSend <= 1.0 s on a 2-core machine, issue
16) and its ratio to the ceiling. Asserts nothing; the scratch database is dropped afterwards.
bench/dispatch.py times the same call end to end through gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import text

from bench.processes import cpu_seconds
from common.db.engine import make_engine, make_sessions
from common.db.migrate import upgrade
from common.db.urls import with_database
from dispatch_service.use_cases.precheck import precheck_command, precheck_send

TARGET_SECONDS = 1.0

FILL = """
INSERT INTO workspace (id, name, default_region, sender_phone_number_id)
VALUES (%(ws)s, 'bench', 'US', '1');
INSERT INTO membership (id, workspace_id, display_name, role)
VALUES (%(admin)s, %(ws)s, 'bench admin', 'parent_admin');
INSERT INTO template (id, workspace_id, name, language, category, variables, status)
VALUES (%(template)s, %(ws)s, 'event_invitation', 'en_US', 'MARKETING', '{guest_name}',
        'APPROVED');
INSERT INTO event (id, workspace_id, name, starts_at) VALUES (%(ev)s, %(ws)s, 'bench', now());
INSERT INTO person (id, workspace_id, display_name, phone_status, phone_e164, raw_phone, active)
SELECT md5('p' || i)::uuid, %(ws)s, 'Guest ' || i,
       CASE WHEN i %% 100 = 1 THEN 'missing' WHEN i %% 100 = 2 THEN 'malformed' ELSE 'valid' END,
       CASE WHEN i %% 100 IN (1, 2) THEN NULL
            WHEN i %% 100 = 3 THEN '+1202' || lpad((i + 10)::text, 7, '0')
            ELSE '+1202' || lpad(i::text, 7, '0') END,
       'as written', i %% 100 <> 4
FROM generate_series(1, %(n)s) AS i;
INSERT INTO guest_unit (id, workspace_id, name, contact_person_id, active)
SELECT md5('u' || i)::uuid, %(ws)s, 'Household ' || lpad(i::text, 7, '0'), md5('p' || i)::uuid,
       i %% 100 <> 5
FROM generate_series(1, %(n)s) AS i;
INSERT INTO guest_unit_membership (workspace_id, guest_unit_id, person_id)
SELECT %(ws)s, md5('u' || i)::uuid, md5('p' || i)::uuid FROM generate_series(1, %(n)s) AS i;
INSERT INTO do_not_message_entry (id, workspace_id, phone_e164, source)
SELECT gen_random_uuid(), %(ws)s, '+1202' || lpad(i::text, 7, '0'), 'operator'
FROM generate_series(6, %(n)s, 100) AS i;
INSERT INTO event_audience (event_id, workspace_id, mode) VALUES (%(ev)s, %(ws)s, 'all');
ANALYZE;
"""
# Already-invited phones: a finished earlier run (header rows written directly).
INVITED = """
INSERT INTO precheck (id, workspace_id, event_id, template_id, actor_id, audience_hash,
  total_count, eligible_count, blocked_count, expires_at)
VALUES (%(precheck)s, %(ws)s, %(ev)s, %(template)s, %(admin)s, 'h', 0, 0, 0, now());
INSERT INTO invite_send_run (id, workspace_id, event_id, template_id, language, precheck_id,
  actor_id, idempotency_key, sender_phone_number_id, state)
VALUES (%(run)s, %(ws)s, %(ev)s, %(template)s, 'en_US', %(precheck)s, %(admin)s, 'k', '1',
        'completed');
INSERT INTO invite_message (run_id, workspace_id, event_id, position, guest_unit_id, person_id,
  phone_e164, variables, state, provider)
SELECT %(run)s, %(ws)s, %(ev)s, i, md5('u' || i)::uuid, md5('p' || i)::uuid,
       '+1202' || lpad(i::text, 7, '0'), '[]', 'delivered', 'meta'
FROM generate_series(7, %(n)s, 100) AS i;
ANALYZE;
"""

CEILING = """
SELECT count(*) FROM guest_unit gu LEFT JOIN person p ON p.id = gu.contact_person_id
WHERE gu.workspace_id = %s
"""


def _fill(url: str, ids: dict[str, Any]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for script in (FILL, INVITED):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement, ids)


def _ceiling(url: str, workspace: uuid.UUID, repeat: int) -> list[float]:
    timings = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(repeat):
            started = time.perf_counter()
            conn.execute(CEILING, (workspace,)).fetchone()
            timings.append(time.perf_counter() - started)
    return timings


async def _prechecks(url: str, ids: dict[str, Any], repeat: int) -> list[float]:
    # One pooled connection: its backend's CPU is what Postgres spent on the precheck.
    engine = make_engine(url, pool_size=1, max_overflow=0)
    sessions = make_sessions(engine)
    timings = []
    try:
        async with sessions() as session:
            backend = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        command = precheck_command(ids["admin"], str(ids["ev"]), str(ids["template"]), 50, [])
        for attempt in range(repeat):
            own, postgres = time.process_time(), cpu_seconds(backend)
            started = time.perf_counter()
            result = await precheck_send(sessions, command, ttl_seconds=600)
            timings.append(time.perf_counter() - started)
            own, postgres = time.process_time() - own, cpu_seconds(backend) - postgres
            blocked = ", ".join(f"{r.value} {n}" for r, n in result.blocked_by_reason.items())
            print(
                f"  PrecheckSend run {attempt + 1}: {timings[-1]:.3f} s; CPU s: service"
                f" {own:.2f}, Postgres {postgres:.2f} ({result.total_count} households,"
                f" {result.eligible_count} eligible; {blocked})"
            )
    finally:
        await engine.dispose()
    return timings


def main() -> None:
    """Fill a scratch database and print PrecheckSend against its ceiling."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_precheck_{uuid.uuid4().hex[:8]}"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server, name)
    try:
        upgrade(url)
        ids: dict[str, Any] = {
            **{k: uuid.uuid4() for k in ("ws", "admin", "template", "ev", "run", "precheck")},
            "n": args.households,
        }
        _fill(url, ids)
        ceiling = statistics.median(_ceiling(url, ids["ws"], args.repeat))
        precheck = statistics.median(asyncio.run(_prechecks(url, ids, args.repeat)))
        load = os.getloadavg()[0]
        print(
            f"ceiling, bare count over the same {args.households} households: "
            f"median {ceiling:.3f} s"
        )
        print(
            f"PrecheckSend, {args.households} households: median {precheck:.3f} s "
            f"(target <= {TARGET_SECONDS:.1f} s; {precheck / ceiling:.1f}x the ceiling; "
            f"load average {load:.2f})"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
