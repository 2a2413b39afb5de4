"""Benchmark: ExportRunMessages of a large run to CSV, through the real gRPC server.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/export_run.py [--messages 100000]

Creates a scratch database beside DATABASE_URL, migrates it, seeds one run of `--messages`
messages (delivered, with pricing) and, for comparison, one of a tenth of that size, serves the
dispatch service in this process on a free port and exports each run twice into a temporary
file: with the CLI's CSV writer in this process (server and client sharing one process), and
with `invites messages RUN --csv` as its own process (what a user runs; its time includes the
CLI's start-up). Prints rows, seconds, rows/s and peak memory (RSS): the server's growth during
each export and the CLI's peak; neither may grow with the run (the export reads keyset batches
of 5,000). Figures are printed, never asserted; the scratch database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from grpc import aio
from psycopg import sql

from cli.export_csv import write_csv
from common.db.engine import make_engine, make_sessions
from common.db.migrate import upgrade
from common.db.urls import with_database
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import dispatch_pb2_grpc
from dispatch_service.bootstrap import Deps
from dispatch_service.server import build_server
from dispatch_service.settings import DispatchSettings

TOKEN = "bench-token"
SEED = """
INSERT INTO workspace (id, name, default_region, sender_phone_number_id)
VALUES (%(ws)s, 'bench', 'US', '1065');
INSERT INTO membership (id, workspace_id, display_name, role)
VALUES (%(member)s, %(ws)s, 'bench', 'parent_admin');
INSERT INTO event (id, workspace_id, name, starts_at) VALUES (%(ev)s, %(ws)s, 'bench', now());
INSERT INTO template (id, workspace_id, name, language, category, status)
VALUES (%(tpl)s, %(ws)s, 'bench', 'en_US', 'MARKETING', 'APPROVED');
INSERT INTO guest_unit (id, workspace_id, name) VALUES (%(unit)s, %(ws)s, 'bench');
"""
RUN = """
INSERT INTO precheck (id, workspace_id, event_id, template_id, actor_id, audience_hash,
                      total_count, eligible_count, blocked_count, expires_at)
VALUES (%(pre)s, %(ws)s, %(ev)s, %(tpl)s, %(member)s, 'h', %(n)s, %(n)s, 0, now());
INSERT INTO invite_send_run (id, workspace_id, event_id, template_id, language, precheck_id,
                             actor_id, idempotency_key, sender_phone_number_id, state)
VALUES (%(run)s, %(ws)s, %(ev)s, %(tpl)s, 'en_US', %(pre)s, %(member)s, %(key)s, '1065',
        'queued');
INSERT INTO invite_message (run_id, workspace_id, event_id, position, guest_unit_id, person_id,
                            phone_e164, state, provider_message_id, sent_at, delivered_at,
                            pricing_billable, pricing_category, pricing_model, pricing_type)
SELECT %(run)s, %(ws)s, %(ev)s, i, %(unit)s, gen_random_uuid(),
       '+1202' || lpad(i::text, 7, '0'), 'delivered', 'wamid.' || %(key)s || '.' || i,
       now(), now(), true, 'marketing', 'PMP', 'regular'
FROM generate_series(0, %(n)s - 1) AS i;
ANALYZE;
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def export(db_url: str, member: uuid.UUID, runs: list[tuple[uuid.UUID, int]]) -> None:
    settings = DispatchSettings(
        database_url=db_url,
        dispatch_listen="127.0.0.1:0",
        dispatch_metrics_listen="",
        dispatch_backend_tokens=TOKEN,
        dispatch_ingestor_token="bench-ingestor",
        whatsapp_access_token="unused",
        whatsapp_phone_number_id="1065",
        dispatcher_enabled=False,
    )
    engine = make_engine(db_url)
    deps = Deps(settings=settings, engine=engine, sessions=make_sessions(engine))
    server, _, port = build_server(settings, deps)
    await server.start()
    metadata = (("authorization", f"Bearer {TOKEN}"), ("x-actor-id", str(member)))
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
            for run_id, n in runs:
                with tempfile.TemporaryFile("w+", newline="") as out:
                    before = peak_rss_mib()
                    started = time.perf_counter()
                    stream = stub.ExportRunMessages(
                        pb.ExportRunMessagesRequest(run_id=str(run_id)), metadata=metadata
                    )
                    rows = await write_csv(aiter(stream), out)
                    seconds = time.perf_counter() - started
                    size = out.tell() / 2**20
                print(
                    f"== in-process export of a {n:,}-message run: {rows:,} rows, {size:.1f} MiB "
                    f"CSV in {seconds:.2f} s ({rows / seconds:,.0f} rows/s); peak RSS "
                    f"{before:.0f} -> {peak_rss_mib():.0f} MiB"
                )
                await cli_export(port, member, run_id, n)
    finally:
        await server.stop(None)
        await engine.dispose()


async def cli_export(port: int, member: uuid.UUID, run_id: uuid.UUID, n: int) -> None:
    """`invites messages RUN --csv > file` as its own process."""
    env = {
        **os.environ,
        "INVITES_TARGET": f"127.0.0.1:{port}",
        "INVITES_TOKEN": TOKEN,
        "INVITES_ACTOR": str(member),
    }
    with tempfile.TemporaryFile("w+b") as out:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "invites"),
            "messages",
            str(run_id),
            "--csv",
            stdout=out,
            env=env,
        )
        code = await process.wait()
        seconds = time.perf_counter() - started
        rows = sum(1 for _ in (out.seek(0), *out)) - 2  # the seek's None and the header
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"== 'invites messages RUN --csv' of a {n:,}-message run: exit {code}, {rows:,} rows in "
        f"{seconds:.2f} s including start-up; the CLI's peak RSS so far {child:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"bench_export_{uuid.uuid4().hex[:10]}"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db_url = with_database(server, name)
    try:
        upgrade(db_url)
        ids = {k: uuid.uuid4() for k in ("ws", "member", "ev", "tpl", "unit")}
        runs = []
        with psycopg.connect(db_url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute(SEED, ids)
            for n in (args.messages // 10, args.messages):
                run = uuid.uuid4()
                conn.execute(
                    RUN, {**ids, "pre": uuid.uuid4(), "run": run, "n": n, "key": run.hex[:8]}
                )
                runs.append((run, n))
        asyncio.run(export(db_url, ids["member"], runs))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
