"""Loading the acting membership from the database (never trusting a role sent by the caller)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import Membership
from common.vocabulary import Role
from dispatch_service.domain.actors import Actor
from dispatch_service.errors import Unauthenticated

NO_ACTIVE_MEMBERSHIP = "x-actor-id names no active membership"


async def load_actor(session: AsyncSession, member_id: uuid.UUID) -> Actor:
    """The active membership `member_id`, or Unauthenticated."""
    row = (
        await session.execute(
            select(Membership.workspace_id, Membership.role).where(
                Membership.id == member_id, Membership.active
            )
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated(NO_ACTIVE_MEMBERSHIP)
    return Actor(member_id=member_id, workspace_id=row.workspace_id, role=Role(row.role))
