"""Benchmark: signed webhook POSTs to committed state, against real processes on loopback.

Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python \
           bench/webhook_ingest.py [--posts-single 6000] [--posts-batched 400] [--rate 3000]

Creates a scratch database beside DATABASE_URL, migrates it, seeds one run of `sent` messages
with known provider ids, starts `python -m dispatch_service` and `python -m webhook_service`
on free ports, waits until the service has numbered the seed's change log (setup, not the
load measured), and sends a bounded number of signed POSTs (bodies signed before timing):

* saturating runs (closed loop, `--connections` back to back) with one status per POST
  (`delivered`) and with 50 (`read`, across two changes of one entry): the capacity; latency
  there is mostly queueing behind the other connections;
* sustained runs (open loop, one POST every 1/rate s for `--paced-seconds`): 50 statuses per POST
  at `--rate` events/s, and one status per POST at `--single-rate` POSTs/s (3,000: Meta's
  status load for one number at its top tier, 1,000 messages/s).

For each it prints: POSTs/s and status events/s acknowledged (200 = the receipt is committed),
events/s until every status is applied to its message (ApplyStatus committed), POST latency
percentiles, the receipt-to-applied lag and POST -> applied (from the moment the POST began to
its receipt being settled as applied, per POST). Then the figures of issue 16 with their targets.

Same-run ceiling: a bare aiohttp server in a process of its own (this file with `--serve-bare`)
that verifies each POST's HMAC and parses its JSON, storing nothing, takes the same saturating
loads; each applied rate is printed as a share of it. The figures are printed, never asserted.
Each run uses its own range of messages; the scratch database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
from aiohttp import web
from psycopg import sql

from bench.http_load import Poster
from bench.processes import (
    child_pids,
    collector_paused,
    free_port,
    machine_cpu,
    machine_speed,
    spawn,
)
from common.db.migrate import upgrade
from common.db.urls import with_database

ROOT = Path(__file__).resolve().parents[1]
SENDER = "106540352242922"
APP_SECRET = "bench-app-secret"
SEED = """
INSERT INTO workspace (id, name, default_region, sender_phone_number_id)
VALUES (%(ws)s, 'bench', 'US', %(sender)s);
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
VALUES (%(run)s, %(ws)s, %(ev)s, %(tpl)s, 'en_US', %(pre)s, %(member)s, 'bench', %(sender)s,
        'dispatching');
INSERT INTO invite_message (run_id, workspace_id, event_id, position, guest_unit_id, phone_e164,
                            state, provider_message_id, sent_at)
SELECT %(run)s, %(ws)s, %(ev)s, i, %(unit)s, '+1202' || lpad(i::text, 7, '0'), 'sent',
       'wamid.bench.' || i, now()
FROM generate_series(0, %(n)s - 1) AS i;
ANALYZE;
"""


def admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(with_database(url, "postgres"), autocommit=True)


def body_for(statuses: list[tuple[int, str]], timestamp: int) -> bytes:
    items = [
        {"id": f"wamid.bench.{n}", "status": s, "timestamp": str(timestamp), "recipient_id": "1202"}
        for n, s in statuses
    ]
    halves = [items[: len(items) // 2 or 1], items[len(items) // 2 or 1 :]]
    changes = [
        {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": SENDER},
                "statuses": half,
            },
        }
        for half in halves
        if half
    ]
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}
    return json.dumps(payload, separators=(",", ":")).encode()


def signed(body: bytes) -> tuple[bytes, str]:
    return body, "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", module], env, log, cwd=ROOT)


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


async def wait_seed_sequenced(db_url: str, timeout: float = 60.0) -> None:
    """Wait until the dispatch service has numbered the change log the seed wrote (one row per
    seeded message, 56,000 by default). Its sequencer otherwise numbers them all at once during
    the first run, about 0.7 s of Postgres CPU that belongs to setting up, not to the webhooks
    measured (they settle in the same seconds)."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = await (
                await conn.execute("SELECT count(*) FROM change_log WHERE seq IS NULL")
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            await asyncio.sleep(0.2)
    raise SystemExit("the seed's change log was not numbered in time")


Post = tuple[bytes, str]
PACED_CONNECTIONS = 256


@dataclass(frozen=True)
class Sent:
    """One POST: its body's SHA-256, when it began (wall clock) and how long it took."""

    sha256: bytes
    began: float
    latency: float


def sent(post: Post, answer: tuple[int, float, float]) -> Sent:
    """One webhook POST's record from its answer (anything but 200 stops the bench)."""
    status, began, latency = answer
    if status != 200:
        raise SystemExit(f"POST answered {status}")
    return Sent(hashlib.sha256(post[0]).digest(), began, latency)


async def post_one(poster: Poster, post: Post, request: bytes) -> Sent:
    """POST one prepared webhook."""
    return sent(post, await poster.post(request))


def prepared(poster: Poster, posts: list[Post]) -> list[tuple[Post, bytes]]:
    """Each signed body with its request bytes, built before timing."""
    return [(post, poster.request(post[0], {"X-Hub-Signature-256": post[1]})) for post in posts]


async def send_saturating(url: str, posts: list[Post], connections: int) -> list[Sent]:
    """Closed loop: `connections` connections POST back to back (measures capacity)."""
    async with Poster(url, connections) as poster:
        requests = [request for _, request in prepared(poster, posts)]
        with collector_paused():
            answers = await poster.post_back_to_back(requests)
    return [sent(post, answer) for post, answer in zip(posts, answers, strict=True)]


PACING_TICK_SECONDS = 0.001


async def send_paced(url: str, posts: list[Post], per_second: float) -> list[Sent]:
    """Open loop: one POST every 1/per_second s whatever the answers (a sustained rate), on
    enough connections that none waits for a free one. Every millisecond the POSTs that are
    due leave together (three at 3,000/s) instead of one timer per POST; the generator's CPU
    per event is printed with the services' (about 75 µs at 3,000/s either way). Its collector
    is paused meanwhile (bench.processes.collector_paused)."""
    async with Poster(url, PACED_CONNECTIONS) as poster:
        requests = prepared(poster, posts)
        with collector_paused():
            started = time.perf_counter()
            tasks = []
            n = 0
            while n < len(requests):
                due = min(len(requests), int((time.perf_counter() - started) * per_second) + 1)
                for post, request in requests[n:due]:
                    tasks.append(asyncio.create_task(post_one(poster, post, request)))
                n = max(n, due)
                await asyncio.sleep(PACING_TICK_SECONDS)
            return list(await asyncio.gather(*tasks))


def messages_in(db_url: str, state: str) -> int:
    """How many of the run's messages are in `state`, from the run's counters (kept by
    triggers): a few rows, where counting the messages themselves every 50 ms cost Postgres
    4 ms a time over 30,000 of them, charged to the ingestion measured. Each scenario moves its
    own `sent` messages to its state, so the count grows by exactly its events."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(count), 0) FROM invite_run_count WHERE state = %s", [state]
        ).fetchone()
    return int(row[0]) if row else 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Scenario:
    """One measured run: `posts` POSTs of `per_post` statuses for messages from `first` on."""

    label: str
    first: int
    posts: int
    per_post: int
    status: str
    rate: float | None = None  # POSTs per second (paced); None: saturate with `connections`

    @property
    def events(self) -> int:
        return self.posts * self.per_post

    def bodies(self, timestamp: int) -> list[Post]:
        return [
            signed(
                body_for(
                    [
                        (self.first + p * self.per_post + k, self.status)
                        for k in range(self.per_post)
                    ],
                    timestamp,
                )
            )
            for p in range(self.posts)
        ]


@dataclass
class Figures:
    """What one scenario measured, for the summary."""

    applied_per_second: float
    post_to_applied_p99_ms: float
    ceiling_per_second: float | None = None
    """Events/s the bare server took of the same POSTs (saturating runs only)."""


class CpuMeter:
    """CPU seconds used by the ingestor, the dispatch service, Postgres and this load generator
    over one phase: with the events it handled, what each costs per event (a figure that noise
    on the machine changes far less than a rate)."""

    def __init__(self, services: dict[str, list[int]]) -> None:
        self.services = services
        self.before = self.read()

    def read(self) -> dict[str, float]:
        return machine_cpu(self.services, "load generator")

    def per_event(self, events: int) -> str:
        after = self.read()
        spent = {name: (after[name] - self.before[name]) / events * 1e6 for name in after}
        parts = ", ".join(f"{name} {us:,.0f}" for name, us in spent.items())
        return f"{sum(spent.values()):,.0f} µs of CPU per event ({parts})"


async def measure(
    scenario: Scenario, url: str, db_url: str, connections: int, services: dict[str, list[int]]
) -> Figures:
    posts = scenario.bodies(int(time.time()))
    with psycopg.connect(db_url) as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()
    before = messages_in(db_url, scenario.status)
    cpu = CpuMeter(services)
    started = time.perf_counter()
    if scenario.rate is None:
        latencies = await send_saturating(url, posts, connections)
        how = f"{connections} connections, back to back"
    else:
        latencies = await send_paced(url, posts, scenario.rate)
        how = f"paced at {scenario.rate * scenario.per_post:,.0f} events/s"
    acked = time.perf_counter() - started
    while messages_in(db_url, scenario.status) - before < scenario.events:
        if time.perf_counter() - started > 300:
            raise SystemExit(f"{scenario.label}: not every status was applied within 300 s")
        await asyncio.sleep(0.05)
    applied = time.perf_counter() - started
    while True:  # the receipts settle (applied_at) just after their statuses are applied
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT body_sha256, extract(epoch FROM applied_at)::float8"
                " FROM webhook_receipt WHERE received_at >= %s AND applied_at IS NOT NULL",
                [since[0] if since else None],
            ).fetchall()
        settled: dict[bytes, float] = {bytes(r[0]): float(r[1]) for r in rows}
        if len(settled) >= len(posts) or time.perf_counter() - started > 300:
            break
        await asyncio.sleep(0.05)
    spent = cpu.per_event(scenario.events)
    to_applied = [settled[s.sha256] - s.began for s in latencies if s.sha256 in settled]
    with psycopg.connect(db_url) as conn:
        lag = conn.execute(
            "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY"
            " extract(epoch FROM applied_at - received_at)) FROM webhook_receipt"
            " WHERE state = 'applied' AND received_at >= %s",
            [since[0] if since else None],
        ).fetchone()
    events = scenario.events
    print(f"== {scenario.label}: {len(posts)} POSTs, {events} status events, {how}")
    print(f"   acknowledged: {len(posts) / acked:,.0f} POSTs/s = {events / acked:,.0f} events/s")
    print(
        f"   applied:      {events / applied:,.0f} events/s"
        f" (the last status applied {applied:.2f} s after the first POST)"
    )
    seconds = [s.latency for s in latencies]
    p50, p99 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.99) * 1000
    print(f"   POST latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(seconds) * 1000:.1f} ms")
    if lag and lag[0] is not None:
        print(f"   receipt stored -> applied: p99 {float(lag[0]) * 1000:.0f} ms")
    whole = percentile(to_applied, 0.99) * 1000
    print(
        f"   POST -> applied: p50 {percentile(to_applied, 0.5) * 1000:.1f} ms,"
        f" p99 {whole:.1f} ms ({len(to_applied)} of {len(posts)} POSTs settled)"
    )
    print(f"   {spent}")
    return Figures(events / applied, whole)


async def serve_bare(listen: str) -> None:
    """The same-run ceiling: verify each POST's HMAC and parse its JSON, store nothing."""
    secret = APP_SECRET.encode()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            return web.Response(status=401)
        json.loads(body)
        return web.Response(text="ok")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", receive)
    app.router.add_get("/readyz", ready)
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    await asyncio.Event().wait()


async def ceiling(scenario: Scenario, connections: int, logs: Path) -> float:
    """Events/s the bare server takes of the scenario's POSTs (saturating, same connections)."""
    listen = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, __file__, "--serve-bare", listen]
    process = spawn(argv, os.environ, logs / "bench-bare.log", ROOT)
    try:
        await wait_http(f"http://{listen}/readyz")
        posts = scenario.bodies(int(time.time()))
        started = time.perf_counter()
        await send_saturating(f"http://{listen}/webhooks/whatsapp", posts, connections)
        return scenario.events / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(timeout=20)


SATURATE_SINGLE = "saturate, 1 status per POST"
SATURATE_BATCHED = "saturate, 50 statuses per POST"
SUSTAINED_SINGLE = "sustained, 1 status per POST"


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The runs, each on its own range of messages (so every status advances a message)."""
    seconds = args.paced_seconds
    plan = [
        (SATURATE_SINGLE, 1, args.posts_single, None),
        (SATURATE_BATCHED, 50, args.posts_batched, None),
        ("sustained, 50 statuses per POST", 50, int(args.rate / 50 * seconds), args.rate / 50),
        (SUSTAINED_SINGLE, 1, int(args.single_rate * seconds), args.single_rate),
    ]
    runs, first = [], 0
    for label, per_post, posts, rate in plan:
        status = "read" if per_post > 1 else "delivered"
        runs.append(Scenario(label, first, posts, per_post, status, rate))
        first += posts * per_post
    return runs


async def main_async(args: argparse.Namespace, db_url: str, runs: list[Scenario]) -> None:
    dispatch, webhook = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISPATCH_", "WHATSAPP_", "WEBHOOK_"))
    }
    env.update(
        DATABASE_URL=db_url,
        DISPATCH_LISTEN=dispatch,
        DISPATCH_TARGET=dispatch,
        DISPATCH_METRICS_LISTEN="",
        DISPATCH_BACKEND_TOKENS="bench-backend-token",
        DISPATCH_INGESTOR_TOKEN="bench-ingestor-token",
        DISPATCHER_ENABLED="false",
        WEBHOOK_LISTEN=webhook,
        WEBHOOK_PROCESSES=str(args.ingestor_processes),
        WHATSAPP_ACCESS_TOKEN="bench-access-token",
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="bench-verify-token",
        WHATSAPP_PHONE_NUMBER_ID=SENDER,
        LOG_LEVEL="WARNING",
    )
    logs = Path(args.log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    processes = [
        start("dispatch_service", env, logs / "bench-dispatch.log"),
        start("webhook_service", env, logs / "bench-webhook.log"),
    ]
    figures: dict[str, Figures] = {}
    try:
        await wait_http(f"http://{webhook}/readyz")
        await wait_seed_sequenced(db_url)
        # With WEBHOOK_PROCESSES > 1 the ingestor is a supervisor and its ingestor processes.
        ingestor = [processes[1].pid, *child_pids(processes[1].pid)]
        for run in runs:
            url = f"http://{webhook}/webhooks/whatsapp"
            services = {"ingestor": ingestor, "dispatch": [processes[0].pid]}
            figures[run.label] = await measure(run, url, db_url, args.connections, services)
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("ANALYZE")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    for run in runs:
        if run.rate is None:
            figures[run.label].ceiling_per_second = await ceiling(run, args.connections, logs)
    summary(figures, args)


def summary(figures: dict[str, Figures], args: argparse.Namespace) -> None:
    """Issue 16's webhook figures with their targets and their share of the ceiling."""
    ingestors = args.ingestor_processes
    print(
        f"== targets (issue 16), {ingestors} ingestor process{'es' if ingestors > 1 else ''}"
        " and one dispatch process on this machine"
    )
    for label, per_post, target in (
        (SATURATE_SINGLE, 1, 3_000),
        (SATURATE_BATCHED, 50, 15_000),
    ):
        f = figures[label]
        bare = f.ceiling_per_second or 0.0
        print(
            f"   {per_post} status{'es' if per_post > 1 else ''} per POST, signed POST -> applied:"
            f" {f.applied_per_second:,.0f} events/s (target >= {target:,});"
            f" same-run ceiling, a bare aiohttp server verifying the HMAC and parsing the JSON:"
            f" {bare:,.0f} events/s ({f.applied_per_second / bare:.0%} of it)"
        )
    paced = figures[SUSTAINED_SINGLE]
    print(
        f"   1 status per POST at {args.single_rate:,.0f} events/s sustained, POST -> applied:"
        f" p99 {paced.post_to_applied_p99_ms:.0f} ms (target <= 50 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--posts-single", type=int, default=6000, help="saturating, 1 per POST")
    parser.add_argument("--posts-batched", type=int, default=400, help="saturating, 50 per POST")
    parser.add_argument("--connections", type=int, default=64, help="for the saturating runs")
    parser.add_argument("--rate", type=float, default=3000, help="sustained events/s, 50 per POST")
    parser.add_argument("--single-rate", type=float, default=3000, help="sustained POSTs/s, 1 each")
    parser.add_argument("--serve-bare", metavar="HOST:PORT", help=argparse.SUPPRESS)
    parser.add_argument("--paced-seconds", type=float, default=5)
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument(
        "--ingestor-processes",
        type=int,
        default=1,
        help="WEBHOOK_PROCESSES: ingestor processes on the one port (issue 16's figures: 1)",
    )
    parser.add_argument(
        "--without-change-log",
        action="store_true",
        help="disable the change-log triggers (to measure what the change stream costs)",
    )
    args = parser.parse_args()
    if args.serve_bare:  # the ceiling's server, started by this bench in a process of its own
        asyncio.run(serve_bare(args.serve_bare))
        return
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    print(machine_speed(server))
    runs = scenarios(args)
    name = f"bench_webhook_{uuid.uuid4().hex[:10]}"
    with admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db_url = with_database(server, name)
    try:
        upgrade(db_url)
        ids = {k: uuid.uuid4() for k in ("ws", "member", "ev", "tpl", "unit", "pre", "run")}
        messages = sum(run.events for run in runs)
        # Client-side binding: the seed is several statements in one execute.
        with psycopg.connect(db_url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute(SEED, {**ids, "n": messages, "sender": SENDER})
            if args.without_change_log:
                conn.execute("ALTER TABLE invite_message DISABLE TRIGGER change_log_message_update")
        asyncio.run(main_async(args, db_url, runs))
    finally:
        with admin(server) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
