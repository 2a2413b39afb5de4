"""Benchmark: what the change log costs the writers, statement by statement.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/change_log.py [--messages 40000] [--batch 200]

Creates a scratch database beside DATABASE_URL, migrates it and seeds one run of `sent`
messages. Then it moves them to `delivered` in set-based UPDATEs of `--batch` rows (the shape of
ApplyStatus and the dispatcher's result writes), alternating statements with the change-log
trigger enabled and disabled (so machine load hits both alike), each in its own transaction,
and prints the median and p90 milliseconds per statement of each. Finally it times the
sequencer numbering everything written. Figures are printed, never asserted; the scratch
database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import psycopg
from psycopg import sql

from common.db.migrate import upgrade
from common.db.urls import with_database
from dispatch_service.persistence.changes import SEQUENCE

SEED = """
INSERT INTO workspace (id, name, default_region, sender_phone_number_id)
VALUES (%(ws)s, 'bench', 'US', '1065');
INSERT INTO membership (id, workspace_id, display_name, role)
VALUES (%(member)s, %(ws)s, 'bench', 'parent_admin');
INSERT INTO event (id, workspace_id, name, starts_at) VALUES (%(ev)s, %(ws)s, 'bench', now());
INSERT INTO template (id, workspace_id, name, language, category, status)
VALUES (%(tpl)s, %(ws)s, 'bench', 'en_US', 'MARKETING', 'APPROVED');
INSERT INTO guest_unit (id, workspace_id, name) VALUES (%(unit)s, %(ws)s, 'bench');
INSERT INTO precheck (id, workspace_id, event_id, template_id, actor_id, audience_hash,
                      total_count, eligible_count, blocked_count, expires_at)
VALUES (%(pre)s, %(ws)s, %(ev)s, %(tpl)s, %(member)s, 'h', %(n)s, %(n)s, 0, now());
INSERT INTO invite_send_run (id, workspace_id, event_id, template_id, language, precheck_id,
                             actor_id, idempotency_key, sender_phone_number_id, state)
VALUES (%(run)s, %(ws)s, %(ev)s, %(tpl)s, 'en_US', %(pre)s, %(member)s, 'k', '1065', 'queued');
INSERT INTO invite_message (run_id, workspace_id, event_id, position, guest_unit_id,
                            phone_e164, state, provider_message_id, sent_at)
SELECT %(run)s, %(ws)s, %(ev)s, i, %(unit)s, '+1202' || lpad(i::text, 7, '0'), 'sent',
       'wamid.' || i, now()
FROM generate_series(0, %(n)s - 1) AS i;
ANALYZE;
"""
MOVE = """
    UPDATE invite_message AS m SET state = 'delivered', delivered_at = now(), updated_at = now()
    FROM jsonb_to_recordset(%s::jsonb) AS v(id uuid) WHERE m.id = v.id AND m.state = 'sent'
"""
TRIGGER = "ALTER TABLE invite_message {} TRIGGER change_log_message_update"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"bench_changes_{uuid.uuid4().hex[:10]}"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db_url = with_database(server, name)
    try:
        upgrade(db_url)
        ids = {k: uuid.uuid4() for k in ("ws", "member", "ev", "tpl", "unit", "pre", "run")}
        with psycopg.connect(db_url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute(SEED, {**ids, "n": args.messages})
            conn.execute(SEQUENCE.text.replace(":limit", "10000000"))
            messages = [str(r[0]) for r in conn.execute("SELECT id FROM invite_message")]
        timings: dict[bool, list[float]] = {True: [], False: []}
        with psycopg.connect(db_url) as conn:
            for n, start in enumerate(range(0, len(messages), args.batch)):
                with_log = n % 2 == 0
                conn.execute(TRIGGER.format("ENABLE" if with_log else "DISABLE"))
                conn.commit()
                batch = [{"id": i} for i in messages[start : start + args.batch]]
                began = time.perf_counter()
                conn.execute(MOVE, [psycopg.types.json.Jsonb(batch)])
                conn.commit()
                timings[with_log].append((time.perf_counter() - began) * 1000)
            conn.execute(TRIGGER.format("ENABLE"))
            conn.commit()
            pending = conn.execute("SELECT count(*) FROM change_log WHERE seq IS NULL").fetchone()
            began = time.perf_counter()
            conn.execute(SEQUENCE.text.replace(":limit", "10000000"))
            conn.commit()
            sequenced = time.perf_counter() - began
        for with_log, values in timings.items():
            q = statistics.quantiles(values, n=10)
            print(
                f"== UPDATE of {args.batch} messages, change log {'on' if with_log else 'off'}: "
                f"median {statistics.median(values):.2f} ms, p90 {q[-1]:.2f} ms "
                f"({len(values)} statements)"
            )
        count = pending[0] if pending else 0
        print(
            f"== sequencer: numbered {count:,} changes in {sequenced * 1000:.0f} ms "
            f"({sequenced / max(count, 1) * 1e6:.1f} us per change, off the writers' path)"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
