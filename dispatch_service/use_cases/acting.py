"""One transaction on behalf of an actor whose role was just read from the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import Role
from dispatch_service.domain.actors import Actor, require_role
from dispatch_service.persistence.actors import load_actor

READERS = frozenset(Role)
"""Every role may read."""


@asynccontextmanager
async def acting(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    allowed: frozenset[Role],
    action: str,
) -> AsyncIterator[tuple[AsyncSession, Actor]]:
    """A session in a transaction (committed on success, rolled back on any error) and the actor.

    Raises Unauthenticated for an unknown or removed membership and PermissionDenied when its
    role is not in `allowed` (`action` names what was attempted, for the message).
    """
    async with sessions() as session, session.begin():
        actor = await load_actor(session, actor_id)
        require_role(actor, allowed, action)
        yield session, actor
