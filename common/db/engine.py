"""Engine and session factories: one async engine per process, created by a composition root."""

from __future__ import annotations

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
