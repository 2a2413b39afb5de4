"""Expected outage errors (the database or a peer service away) and how they are logged.

An outage makes every loop of a service fail the same way many times a second. `OutageLog`
writes one line when a kind of failure starts (no traceback for an expected outage error),
then one line per back-off step with a growing interval (1, 2, 4, ... up to 60 s) saying how
many failures there were since, and one line when it recovers. Unexpected errors keep their
traceback, once per step too.
"""

from __future__ import annotations

import logging
import time

import grpc
import psycopg
from grpc import aio
from sqlalchemy import exc as sa_exc

FIRST_STEP_SECONDS = 1.0
MAX_STEP_SECONDS = 60.0
OUTAGE_GRPC_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Postgres SQLSTATEs of a server going away or not accepting connections yet.
OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "08000", "08001", "08003", "08006"})


# Postgres's class 40 (transaction rollback): a deadlock or serialization failure rolled the
# transaction back. The database is up; the work conflicted with other work and may be retried.
CONFLICT_SQLSTATE_CLASS = "40"


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_conflict_error(error: BaseException) -> bool:
    """True for a transaction Postgres rolled back because it conflicted with another one
    (deadlock, serialization failure): not an outage; the work may simply be retried."""
    return any(
        str(getattr(e, "sqlstate", None) or "").startswith(CONFLICT_SQLSTATE_CLASS)
        for e in _chain(error)
    )


def is_outage_error(error: BaseException) -> bool:
    """True for errors that mean "the database / the peer is not reachable right now"."""
    if is_conflict_error(error):
        return False
    for current in _chain(error):
        if isinstance(current, ConnectionError | TimeoutError | OSError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.InterfaceError | sa_exc.OperationalError):
            return True
        if getattr(current, "sqlstate", None) in OUTAGE_SQLSTATES:
            return True
        if isinstance(current, psycopg.OperationalError | psycopg.InterfaceError) and (
            current.sqlstate is None  # raised by the client: no connection, or it was lost
        ):
            return True
        if type(current).__module__.startswith("asyncpg") and type(current).__name__ in {
            "ConnectionDoesNotExistError",
            "CannotConnectNowError",
            "ConnectionFailureError",
            "InterfaceError",
            "AdminShutdownError",
            "InternalClientError",
        }:
            return True
        if isinstance(current, aio.AioRpcError) and current.code() in OUTAGE_GRPC_CODES:
            return True
    return False


class OutageLog:
    """Logs one kind of repeated failure (say "claiming") at a growing interval."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.failures = 0
        """Failures since the last success."""
        self.lines = 0
        """Lines written for the current outage (tests and operators read it)."""
        self._since = 0.0
        self._next_line_at = 0.0
        self._step = FIRST_STEP_SECONDS
        self._suppressed = 0

    def failed(self, error: BaseException) -> None:
        """Count a failure; write a line when the current back-off step has passed."""
        now = time.monotonic()
        if self.failures == 0:
            self._since = now
            self._next_line_at = now
            self._step = FIRST_STEP_SECONDS
            self._suppressed = 0
            self.lines = 0
        self.failures += 1
        if now < self._next_line_at:
            self._suppressed += 1
            return
        expected = is_outage_error(error)
        if self.failures == 1:
            message = "%s failed: %s"
            args: tuple[object, ...] = (self.what, _describe(error))
        else:
            message = "%s still failing for %.0f s (%d failures since the last line): %s"
            args = (self.what, now - self._since, self._suppressed + 1, _describe(error))
        self.logger.warning(message, *args, exc_info=None if expected else error)
        self.lines += 1
        self._suppressed = 0
        self._next_line_at = now + self._step
        self._step = min(MAX_STEP_SECONDS, self._step * 2)

    def succeeded(self) -> None:
        """The operation works again: one line if it had failed."""
        if self.failures:
            self.logger.warning(
                "%s recovered after %.1f s (%d failures)",
                self.what,
                time.monotonic() - self._since,
                self.failures,
            )
            self.failures = 0


def _describe(error: BaseException) -> str:
    """The error's type and the first line of its text (SQLAlchemy puts the statement and its
    parameters on later lines: never logged)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
