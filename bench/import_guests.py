"""Benchmark: import a generated 100,000-row guest CSV through ImportGuests, against the COPY
of the same rows.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/import_guests.py [--rows 100000] [--chunk-kib 64] [--repeat 1]

Creates a scratch database beside DATABASE_URL and migrates it, starts the service as it runs
in production (`python -m dispatch_service`, API only) on a free port, streams the CSV over a
real channel in chunks (as `invites guests import` does) into a new workspace, then imports the
same file again under a new key (every row an update); `--repeat` times, each into a workspace
of its own. Prints each import's seconds, rows/s and counters, the CPU seconds the service, its
import worker and Postgres spent on it (wall time on a shared machine says little alone), the
wall time over the service's and Postgres's CPU (1.0: they took turns; lower: they overlapped;
it moves far less with the machine's speed than the seconds do), the service's peak RSS, and
the medians with their target: 100,000 rows in at most 10 s on a 2-core machine (issue 16).

Same-run ceiling: the rows the first import stored (people, identities, households,
memberships, tags, import rows) exported and loaded again with COPY (FORMAT BINARY) into a
second migrated scratch database, in one transaction: what Postgres alone needs to write them,
with every index and key check of the schema. Both scratch databases are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from grpc import aio
from psycopg import sql

from bench.processes import (
    cpu_seconds,
    family_cpu_seconds,
    free_port,
    machine_speed,
    spawn,
    wait_serving,
)
from common.db.migrate import upgrade
from common.db.urls import with_database
from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import admin_pb2_grpc

TOKEN = "bench-backend-token"
TARGET_SECONDS = 10.0
# What one import writes, in an order the foreign keys accept.
STORED_TABLES = (
    ("person", "workspace_id = %s"),
    ("guest_identity", "workspace_id = %s"),
    ("guest_unit", "workspace_id = %s"),
    ("guest_unit_membership", "workspace_id = %s"),
    ("tag", "workspace_id = %s"),
    ("guest_unit_tag", "tag_id IN (SELECT id FROM tag WHERE workspace_id = %s)"),
    # The first import's rows only: the second (updates) stored as many again in the same
    # workspace, and counting them made the ceiling one import's work and a half.
    (
        "import_row",
        "import_run_id = (SELECT id FROM import_run WHERE workspace_id = %s"
        " ORDER BY created_at LIMIT 1)",
    ),
)
SIDES = ("bride", "groom", "")
TAGS = ("family", "friends", "work", "family;vip", "")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Households of 1-4 people; ~1% malformed and ~1% missing phones; unique valid phones."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("household,name,phone,tags,side,is_contact\n")
        written, household = 0, 0
        while written < rows:
            household += 1
            size = min(rng.randint(1, 4), rows - written)
            tags, side = rng.choice(TAGS), rng.choice(SIDES)
            for member in range(size):
                written += 1
                roll = rng.random()
                if roll < 0.01:
                    phone = "not-a-phone"
                elif roll < 0.02:
                    phone = ""
                else:
                    area, line = 201 + written // 10_000, written % 10_000
                    phone = (
                        f"+1 {area} 555 {line:04d}" if written % 2 else f"({area}) 555-{line:04d}"
                    )
                contact = "yes" if member == 0 else ""
                out.write(
                    f"Household {household:06d},Guest {written},{phone},{tags},{side},{contact}\n"
                )


async def _chunks(path: Path, key: str, chunk: int) -> AsyncIterator[pb.ImportGuestsRequest]:
    yield pb.ImportGuestsRequest(
        header=pb.ImportHeader(
            idempotency_key=key, source=pb.IMPORT_SOURCE_CSV, file_name=path.name
        )
    )
    with path.open("rb") as handle:
        while data := handle.read(chunk):
            yield pb.ImportGuestsRequest(chunk=data)


def _postgres_cpu(url: str) -> float:
    """CPU seconds of every backend now connected to the scratch database but this one."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(cpu_seconds(pid) for (pid,) in pids)


async def _import(
    stub: admin_pb2_grpc.AdminServiceAsyncStub,
    actor: str,
    path: Path,
    chunk: int,
    label: str,
    url: str,
    service: int,
) -> float:
    metadata = (("authorization", f"Bearer {TOKEN}"), ("x-actor-id", actor))
    own, children = family_cpu_seconds(service)
    postgres = _postgres_cpu(url)
    started = time.perf_counter()
    reply = await stub.ImportGuests(
        _chunks(path, uuid.uuid4().hex, chunk), metadata=metadata, timeout=600
    )
    elapsed = time.perf_counter() - started
    own_after, children_after = family_cpu_seconds(service)
    service_cpu, postgres_cpu = own_after - own, _postgres_cpu(url) - postgres
    run = reply.import_run
    print(
        f"  {label}: {run.total_rows} rows in {elapsed:.2f} s"
        f" = {run.total_rows / elapsed:,.0f} rows/s (created {run.created}, updated {run.updated},"
        f" reactivated {run.reactivated}, malformed {run.warning_malformed_phone},"
        f" skipped {run.skipped_no_phone}); CPU s: service {service_cpu:.1f},"
        f" worker {children_after - children:.1f}, Postgres {postgres_cpu:.1f};"
        f" wall / (service + Postgres CPU) {elapsed / (service_cpu + postgres_cpu):.2f};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    return elapsed


async def _bench(url: str, path: Path, chunk: int, repeat: int, log: Path) -> dict[str, Any]:
    """Import `repeat` times into the service run as in production (python -m dispatch_service,
    API only: its garbage collection tuned, its import worker spawned as it is there)."""
    target = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DISPATCH_LISTEN": target,
        "DISPATCH_METRICS_LISTEN": "",
        "DISPATCHER_ENABLED": "false",
        "DISPATCH_BACKEND_TOKENS": TOKEN,
        "DISPATCH_INGESTOR_TOKEN": "bench-ingestor-token",
        "WHATSAPP_ACCESS_TOKEN": "bench-access-token",
        "WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
        "IMPORT_MAX_BYTES": str(1 << 30),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    service = spawn([sys.executable, "-m", "dispatch_service"], env, log)
    figures: dict[str, Any] = {"creates": [], "updates": [], "workspaces": []}
    try:
        wait_serving(target)
        async with aio.insecure_channel(target) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            for attempt in range(repeat):
                created = await stub.CreateWorkspace(
                    pb.CreateWorkspaceRequest(
                        name=f"Bench {attempt}", default_region="US", admin_display_name="B"
                    ),
                    metadata=(("authorization", f"Bearer {TOKEN}"),),
                )
                figures["workspaces"].append(uuid.UUID(created.workspace.workspace_id))
                actor = created.admin.member_id
                for key, label in (
                    ("creates", "first import (creates)"),
                    ("updates", "second import (updates)"),
                ):
                    figures[key].append(
                        await _import(
                            stub,
                            actor,
                            path,
                            chunk,
                            f"run {attempt + 1}, {label}",
                            url,
                            service.pid,
                        )
                    )
        peak = _peak_rss_mib(service.pid)
        print(f"  peak RSS of the service: {peak:.0f} MiB")
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
    return figures


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _copy_ceiling(url: str, ceiling_url: str, workspace: uuid.UUID) -> float:
    """Seconds to COPY what one import stored into an empty database with the same schema."""
    exported: list[tuple[str, bytes]] = []
    with psycopg.connect(url, autocommit=True) as source:
        for table, where in STORED_TABLES:
            query = sql.SQL("COPY (SELECT * FROM {} WHERE " + where + ") TO STDOUT (FORMAT BINARY)")
            data = bytearray()
            with source.cursor() as cursor:
                statement = query.format(sql.Identifier(table))
                with cursor.copy(statement, (workspace,)) as copy:
                    for block in copy:
                        data += block
            exported.append((table, bytes(data)))
        parents = {
            table: source.execute(
                sql.SQL("SELECT * FROM {} WHERE " + where).format(sql.Identifier(table)),
                (workspace,),
            ).fetchall()
            for table, where in (
                ("workspace", "id = %s"),
                ("membership", "workspace_id = %s"),
                ("import_run", "workspace_id = %s"),
            )
        }
    with psycopg.connect(ceiling_url) as target:
        for table, rows in parents.items():
            for row in rows:
                marks = sql.SQL(", ").join([sql.Placeholder()] * len(row))
                target.execute(
                    sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(table), marks), row
                )
        target.commit()
        started = time.perf_counter()
        with target.cursor() as cursor:
            for table, blocks in exported:
                statement = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(
                    sql.Identifier(table)
                )
                with cursor.copy(statement) as copy:
                    copy.write(blocks)
        target.commit()
        return time.perf_counter() - started


def _create(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


def main() -> None:
    """Generate the CSV, import it into a scratch database, print the figures and the ceiling."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_import_{uuid.uuid4().hex[:8]}"
    admin = with_database(server, "postgres")
    print(machine_speed(admin))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "guests.csv"
        write_csv(path, args.rows)
        print(f"generated {args.rows} rows ({path.stat().st_size / 1e6:.1f} MB)")
        _create(admin, name)
        _create(admin, name + "_ceiling")
        try:
            url, ceiling_url = with_database(server, name), with_database(server, name + "_ceiling")
            upgrade(url)
            upgrade(ceiling_url)
            log = Path(tmp) / "dispatch_service.log"
            try:
                figures = asyncio.run(_bench(url, path, args.chunk_kib * 1024, args.repeat, log))
            except BaseException:
                print(log.read_text(errors="replace")[-4000:])
                raise
            ceiling = _copy_ceiling(url, ceiling_url, figures["workspaces"][0])
        finally:
            _drop(admin, name)
            _drop(admin, name + "_ceiling")
    print(
        f"ceiling, COPY of the rows one import stored: {ceiling:.2f} s"
        f" (load average {os.getloadavg()[0]:.2f})"
    )
    for key, label in (("creates", "first import (creates)"), ("updates", "second (updates)")):
        median = statistics.median(figures[key])
        print(
            f"guest import, {args.rows} rows, {label}: median {median:.2f} s of {len(figures[key])}"
            f" (target <= {TARGET_SECONDS:.0f} s; {median / ceiling:.1f}x the COPY ceiling)"
        )


if __name__ == "__main__":
    main()
