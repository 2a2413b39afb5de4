"""`invites up` stops cleanly on SIGTERM or SIGINT at any moment (start-up included), whatever
signal dispositions its parent left it: exit 0 within 15 s, children gone, the embedded
Postgres stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, wait_until

STOP_SECONDS = 15


def postmaster_pid(pgdata: Path) -> int | None:
    """The embedded Postgres's pid while it runs (first line of postmaster.pid)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def start_up(tmp_path: Path, *, ignore_sigint: bool) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DISPATCH_", "WHATSAPP_", "SANDBOX_", "WEBHOOK_"))
    }
    env.update(
        DISPATCH_LISTEN=f"127.0.0.1:{free_port()}",
        DISPATCH_METRICS_LISTEN="",
        WEBHOOK_LISTEN=f"127.0.0.1:{free_port()}",
        SANDBOX_LISTEN=f"127.0.0.1:{free_port()}",
    )

    def as_a_background_job() -> None:  # a shell's `&` job inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with (tmp_path / "up.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--state-dir", str(tmp_path / "state")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=as_a_background_job if ignore_sigint else None,
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "moment", "ignore_sigint"),
    [
        (signal.SIGTERM, "starting Postgres", False),
        (signal.SIGINT, "migrating or starting services", True),
        (signal.SIGTERM, "up", False),
    ],
)
def test_up_stops_cleanly_on_a_signal_at_any_moment(
    tmp_path: Path, signum: int, moment: str, ignore_sigint: bool
) -> None:
    up = start_up(tmp_path, ignore_sigint=ignore_sigint)
    log = tmp_path / "up.log"
    pgdata = tmp_path / "state" / "pgdata"
    try:
        if moment == "starting Postgres":
            wait_until(lambda: "starting embedded Postgres" in log.read_text(), 60, "pg start")
        elif moment == "migrating or starting services":
            wait_until(lambda: postmaster_pid(pgdata) is not None, 60, "Postgres up")
            time.sleep(0.5)
        else:
            wait_until(lambda: "Ctrl-C stops everything" in log.read_text(), 120, "stack up")
        up.send_signal(signum)
        code = up.wait(timeout=STOP_SECONDS)
        postgres = postmaster_pid(pgdata)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "stopped" in output
    # the embedded Postgres was stopped (or never started), not left running
    assert postgres is None, output[-2000:]
    started = [line for line in output.splitlines() if "starting embedded Postgres" in line]
    assert started  # the signal came after start-up had begun
