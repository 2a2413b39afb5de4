"""Engine and session factories: one async engine per process, created by a composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from common.settings import sqlalchemy_url


def make_engine(database_url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An async psycopg 3 engine; the caller owns it and disposes of it on shutdown."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
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
    would only add its BEGIN and ROLLBACK round trips."""
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
