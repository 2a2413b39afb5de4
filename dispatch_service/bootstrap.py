"""The dispatch service's dependencies, built once per process by the composition root."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db.engine import make_engine, make_sessions
from dispatch_service.settings import DispatchSettings


@dataclass
class Deps:
    """What the servicers and workers talk to; tests build their own."""

    settings: DispatchSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    background: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        """Stop background work and dispose of the engine."""
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.engine.dispose()


def build_deps(settings: DispatchSettings) -> Deps:
    """The production dependencies: one engine and its session factory."""
    engine = make_engine(settings.database_url)
    return Deps(settings=settings, engine=engine, sessions=make_sessions(engine))
