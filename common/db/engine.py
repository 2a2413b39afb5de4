"""Engine and session factories: one async engine per process, created by a composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from common.settings import sqlalchemy_url


def make_engine(database_url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An async psycopg 3 engine; the caller owns it and disposes of it on shutdown.

    No pre-ping: checking each connection as it leaves the pool cost every transaction one more
    round trip, and on a busy 2-core machine each round trip is a wait to be scheduled again
    (GetRunStatus p50 5.6 -> 3.3 ms, p99 17 -> 11-15 ms while a run dispatches). Postgres can
    go away in the middle of any transaction, so every caller already handles a lost connection
    (an outage error: UNAVAILABLE for a call, a retry for the dispatcher's and ingestor's loops);
    the first statement on a connection from before a restart is one more such moment. SQLAlchemy
    then discards every connection the pool held (they are all from before the restart).
    """
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A database error's text carries the statement, never its parameters: they may be
        # secrets (a callback's signing secret) or guests' phone numbers, and such errors are
        # logged (the gRPC guard logs every unexpected one).
        hide_parameters=True,
    )


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory with explicit transactions and no expiry after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def outside_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose connection runs each statement on its own (autocommit), for a read that
    is a single statement: one statement is one snapshot already, and a transaction around it
    would only add its BEGIN and ROLLBACK round trips.

    The ROLLBACK costs more than its round trip: psycopg forgets every statement it prepared on
    a connection that rolls back (and deallocates them on the server), so the next five runs
    of each statement on that pooled connection are parsed and planned again. A loop that reads
    in a transaction ten times a second kept a whole process's statements unprepared. So reads
    that repeat use this, or commit (a read-only transaction that commits forgets nothing)."""
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


@asynccontextmanager
async def autocommit_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection whose statements each run on their own (see outside_transaction:
    no BEGIN, and no ROLLBACK to make psycopg forget its prepared statements)."""
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


@asynccontextmanager
async def driver_autocommit(
    bind: AsyncEngine | async_sessionmaker[AsyncSession],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection of `bind`'s pool (an engine, or a session factory's engine), as its own
    psycopg connection in autocommit: each statement is a transaction of its own, committed
    before psycopg returns its rows. For the statements run hundreds of times a second (the send
    worker's mark, persistence.message_transitions.mark_attempting; the ingestor's receipt
    flush, webhook_service.inbox; GetRunStatus's read, persistence.run_figures): one round trip
    instead of BEGIN, the statement and COMMIT, and no
    session around it (a session around a short transaction cost 645 µs of CPU against 375 µs
    on the driver with BEGIN and COMMIT, and 150 µs without them). The connection goes back to
    the pool as any other; a lost connection raises psycopg's own errors (which common.outages
    knows as outages) and is discarded, not reset, on its way back.

    It switches the driver's autocommit itself rather than through autocommit_connection:
    SQLAlchemy's execution_options cost about 100 µs of CPU more per use (445-470 against
    327-367 µs for a use with one SELECT, 2,000 uses, uvloop), on the worker's hottest loop."""
    engine: AsyncEngine = bind if isinstance(bind, AsyncEngine) else bind.kw["bind"]
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        try:
            await driver.set_autocommit(True)
            try:
                yield driver
            finally:
                if not (driver.broken or driver.closed):
                    await driver.set_autocommit(False)
        except BaseException:
            if driver.broken or driver.closed:
                await connection.invalidate()
            raise
