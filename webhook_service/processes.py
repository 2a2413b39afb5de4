"""WEBHOOK_PROCESSES > 1: several ingestor processes serve one port, for machines with more cores.

One ingestor process is bound by its own CPU: aiohttp, the HMAC, the receipt INSERT and the
forwarding run on one event loop, so on a machine with more cores the same port is served by N
processes. This process then only supervises: it starts N ingestors (`python -m
webhook_service` with WEBHOOK_PROCESSES=1), each binding WEBHOOK_LISTEN with SO_REUSEPORT, so
the kernel spreads incoming connections over them. Each has its own forwarder and sweeper (the
sweepers share pending receipts with SKIP LOCKED, as separate ingestors do), `/healthz` and
`/readyz`; `/metrics` answers for all of them together (prometheus_client's multiprocess mode,
a directory of this supervisor's that it removes on exit).

Stopping: SIGTERM or SIGINT to the supervisor is passed on as SIGTERM to every ingestor (each
finishes its requests within WEBHOOK_GRACE_SECONDS); the ingestors are in a session of their
own, so a terminal's Ctrl-C reaches them only this way, once. If an ingestor exits on its own,
the supervisor stops the others and exits with its code, so the service manager restarts the
whole, as it would a single ingestor; each ingestor gets SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from types import FrameType

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _die_with_parent(parent: int) -> None:
    """In each ingestor before it runs: SIGTERM when the supervisor dies (Linux; elsewhere an
    ingestor outlives a supervisor killed with SIGKILL)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(count: int) -> int:
    """Run `count` ingestors on one port until stopped; the exit code (0: stopped by a
    signal and every ingestor stopped cleanly)."""
    metrics_dir = tempfile.mkdtemp(prefix="invites-webhook-metrics-")
    env = {
        **os.environ,
        "WEBHOOK_PROCESSES": "1",
        "WEBHOOK_REUSE_PORT": "true",
        METRICS_DIR_VARIABLE: metrics_dir,
    }
    parent = os.getpid()
    children: dict[int, subprocess.Popen[bytes]] = {}
    alive: set[int] = set()
    stopping = False

    def stop_all(_signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in alive:  # os.kill, not Popen.send_signal: that would reap an exited one
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    code = 0
    try:
        for _ in range(count):
            if stopping:  # a signal came while starting them: start no more (none would stop)
                break
            child = subprocess.Popen(
                [sys.executable, "-m", "webhook_service"],
                env=env,
                start_new_session=True,
                preexec_fn=lambda: _die_with_parent(parent),
            )
            children[child.pid] = child
            alive.add(child.pid)
        log.info("supervising %d ingestor processes: %s", count, sorted(children))
        while alive:
            pid, status = os.wait()  # a signal runs stop_all, then the wait goes on (PEP 475)
            if pid not in alive:
                continue
            alive.discard(pid)
            child_code = os.waitstatus_to_exitcode(status)
            children[pid].returncode = child_code
            if not stopping:
                log.error("ingestor process %d exited (%d): stopping the others", pid, child_code)
                code = child_code or 1
                stop_all()
            elif child_code != 0 and code == 0:
                code = child_code
    finally:
        stop_all()
        for child in children.values():
            child.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code
