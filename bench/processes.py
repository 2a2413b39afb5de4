"""What the benches read about running processes from Linux's /proc, and how a bench keeps its
own process's pauses out of what it times (shared by the bench scripts; run as a script, as
`make bench` does with every file here, it prints nothing)."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

PROBE_STEPS = 2_000_000
PROBE_ROUND_TRIPS = 2_000
PROBE_ROWS = 2_000_000


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's garbage collector off while it times calls to the services, its heap frozen
    first (the benches' load generators and clients are not what is measured).

    A full collection over what a bench holds (the prepared requests, the answers of earlier
    phases) stopped its event loop for up to about 100 ms, and every call in flight was charged
    for it: in the sustained webhook run the slowest POST took 94-120 ms with the collector on
    and 39-62 ms with it paused (2026-12-07), and the run's first 0.3 s lost their pace. wrk, the
    C load generator the issue's figures came from, has no collector. What a timed phase
    allocates meanwhile (a record per call) is bounded by the phase."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def spawn(
    argv: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a process the bench measures (a service, the sandbox), its output to `log`, in a
    session of its own.

    Its own session is its own scheduling group: with the kernel's autogroups (on here, as on
    most desktop and VM kernels) the CPU is first shared between sessions, then between the
    processes of each. Postgres starts every backend in a session of its own, so when the
    services shared the bench's session, all of them together (API replicas, the send worker,
    the sandbox, the ingestor) and the bench's client got one backend's share of a busy
    machine, and a GetRunStatus read waited longer for it (docs/dispatch.md §10 has the
    figures). In production each runs in a container or a systemd unit of its own, which is the
    scheduling this reproduces. BENCH_ONE_SESSION=1 keeps them in the bench's session, as the
    benches ran them before, to compare."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=os.environ.get("BENCH_ONE_SESSION") != "1",
        )


def free_port() -> int:
    """A TCP port on loopback nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(target: str, attempts: int = 200) -> None:
    """Wait until the gRPC server at `target` answers its health check with SERVING."""
    for _ in range(attempts):
        with grpc.insecure_channel(target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"{target} never answered SERVING")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(parent: int) -> list[int]:
    """The pids of the processes whose parent is `parent` now (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return sorted(found)


def family_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds so far of a process itself, and of its children: those it waited for once
    they exited and those alive now."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    children = (int(fields[13]) + int(fields[14])) / tick
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            listed = (task / "children").read_text().split()
        except FileNotFoundError:
            continue  # the thread ended while we looked
        for child in listed:
            try:
                children += cpu_seconds(int(child))
            except (FileNotFoundError, ProcessLookupError):
                continue  # it ended while we looked
    return (int(fields[11]) + int(fields[12])) / tick, children


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the Postgres servers on this machine: each postmaster, what it
    reaped of its backends that exited (their CPU would otherwise vanish from the sum when a
    pool closes a connection mid-phase), and its live backends."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parent = Path(f"/proc/{fields[1]}/comm")
            postmaster = not parent.exists() or parent.read_text().strip() != "postgres"
            used = int(fields[11]) + int(fields[12])
            if postmaster:  # cutime + cstime: the exited children it waited for
                used += int(fields[13]) + int(fields[14])
            total += used / os.sysconf("SC_CLK_TCK")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # it ended while we looked
    return total


def machine_cpu(groups: Mapping[str, Iterable[int]], own: str) -> dict[str, float]:
    """CPU seconds so far of each named group of processes, of Postgres (postgres_cpu_seconds)
    and of this process (named `own`): read before and after a phase, the difference says what
    each part of the machine spent on it."""
    used = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    used["postgres"] = postgres_cpu_seconds()
    used[own] = time.process_time()
    return used


def _best_of_three(work: Callable[[], object]) -> float:
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def machine_speed(database_url: str) -> str:
    """How fast this machine is right now, in three small probes (best of three each): a pure
    Python loop, `SELECT 1` round trips to Postgres, and Postgres counting rows. The 2-core
    machine's speed moves by tens of percent from day to day and hour to hour; figures taken
    at different times compare only with these beside them."""
    python = PROBE_STEPS / _best_of_three(lambda: sum(i * i for i in range(PROBE_STEPS)))
    with psycopg.connect(database_url, autocommit=True) as conn:

        def round_trips() -> None:
            for _ in range(PROBE_ROUND_TRIPS):
                conn.execute("SELECT 1").fetchone()

        trips = PROBE_ROUND_TRIPS / _best_of_three(round_trips)
        count = _best_of_three(
            lambda: conn.execute(
                "SELECT count(*) FROM generate_series(1, %s)", (PROBE_ROWS,)
            ).fetchone()
        )
    return (
        f"machine speed now: Python {python / 1e6:.1f} M loop steps/s; Postgres"
        f" {trips:,.0f} SELECT 1 round trips/s, {count * 1000:.0f} ms to count"
        f" {PROBE_ROWS:,} rows; load average {os.getloadavg()[0]:.2f}"
    )
