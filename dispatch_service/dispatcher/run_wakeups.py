"""Wakes the claim loop the moment a run becomes claimable.

StartRun, ResumeRun, a scheduled run coming due and a completed run reopened signal on
`RUNS_CHANNEL` when their transaction commits (persistence.run_transitions.wake_dispatchers).
A worker LISTENs on its own connection and, on a signal, reloads its active runs and claims at
once; without the signal it would find the run at its next periodic refresh
(worker.RUNS_REFRESH_SECONDS). That refresh stays, so this only ever saves time: a lost
connection costs latency, never a message. It reconnects with a growing pause, logged once per
back-off step like every other outage (common.outages), and wakes the loop on reconnecting, for
whatever started while it was away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import URL

from common.outages import OutageLog
from dispatch_service.persistence.run_transitions import RUNS_CHANNEL

log = logging.getLogger(__name__)

FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 5.0


def conninfo(url: URL) -> str:
    """The libpq connection string for SQLAlchemy's URL of the same database."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class RunWakeups:
    """Calls `wake` whenever a run became claimable (see the module docstring)."""

    def __init__(self, dsn: str, wake: Callable[[], None]) -> None:
        self._dsn = dsn
        self._wake = wake
        self._log = OutageLog(log, "listening for new runs")
        self.listening = asyncio.Event()
        """Set while the LISTEN connection is up."""

    async def run(self) -> None:
        """Listen until cancelled."""
        pause = FIRST_PAUSE_SECONDS
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {RUNS_CHANNEL}")
                    self.listening.set()
                    self._log.succeeded()
                    pause = FIRST_PAUSE_SECONDS
                    self._wake()
                    async for _ in conn.notifies():
                        self._wake()
            except (psycopg.Error, OSError) as error:
                self._log.failed(error)
            self.listening.clear()
            await asyncio.sleep(pause)
            pause = min(MAX_PAUSE_SECONDS, pause * 2)
