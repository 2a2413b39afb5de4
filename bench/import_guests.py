"""Benchmark: import a generated 100,000-row guest CSV through ImportGuests, print rows/s.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/import_guests.py [--rows 100000] [--chunk-kib 64]

Creates a scratch database beside DATABASE_URL and migrates it, starts the real gRPC server
in-process on a free port, streams the CSV over a real channel in chunks (as `invites guests
import` does), prints the run's counters and rows/s, then imports the same file again under a
new key (every row an update) and prints that too. The scratch database is dropped afterwards.
Target (SPEC §10, this issue): 100,000 rows in at most 30 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
from grpc import aio
from psycopg import sql

from common.db.engine import make_engine, make_sessions
from common.db.migrate import upgrade
from common.db.urls import with_database
from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import admin_pb2_grpc
from dispatch_service.bootstrap import Deps
from dispatch_service.server import build_server
from dispatch_service.settings import DispatchSettings

TOKEN = "bench-backend-token"
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


async def _import(
    stub: admin_pb2_grpc.AdminServiceAsyncStub, actor: str, path: Path, chunk: int, label: str
) -> None:
    metadata = (("authorization", f"Bearer {TOKEN}"), ("x-actor-id", actor))
    started = time.perf_counter()
    reply = await stub.ImportGuests(
        _chunks(path, uuid.uuid4().hex, chunk), metadata=metadata, timeout=600
    )
    elapsed = time.perf_counter() - started
    run = reply.import_run
    print(
        f"{label}: {run.total_rows} rows in {elapsed:.2f} s"
        f" = {run.total_rows / elapsed:,.0f} rows/s"
        f" (created {run.created}, updated {run.updated}, reactivated {run.reactivated},"
        f" malformed {run.warning_malformed_phone}, skipped {run.skipped_no_phone})"
    )


async def _bench(url: str, path: Path, chunk: int) -> None:
    settings = DispatchSettings(
        database_url=url,
        dispatch_listen="127.0.0.1:0",
        dispatch_metrics_listen="",
        dispatch_backend_tokens=TOKEN,
        dispatch_ingestor_token="bench-ingestor-token",
        whatsapp_access_token="bench-access-token",
        whatsapp_phone_number_id="100000000000001",
        import_max_bytes=1 << 30,
    )
    engine = make_engine(url)
    server, _, port = build_server(settings, Deps(settings, engine, make_sessions(engine)))
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        created = await stub.CreateWorkspace(
            pb.CreateWorkspaceRequest(name="Bench", default_region="US", admin_display_name="B"),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
        )
        actor = created.admin.member_id
        await _import(stub, actor, path, chunk, "first import (creates)")
        await _import(stub, actor, path, chunk, "second import (updates)")
    finally:
        await channel.close(None)
        await server.stop(None)
        await engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (client + server): {peak:.0f} MiB")


def main() -> None:
    """Generate the CSV, import it twice into a scratch database, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-kib", type=int, default=64)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_import_{uuid.uuid4().hex[:8]}"
    admin = with_database(server, "postgres")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "guests.csv"
        write_csv(path, args.rows)
        print(f"generated {args.rows} rows ({path.stat().st_size / 1e6:.1f} MB)")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            upgrade(with_database(server, name))
            asyncio.run(_bench(with_database(server, name), path, args.chunk_kib * 1024))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
