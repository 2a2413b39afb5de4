"""What StartRun reads to build a run's send plan, and where it keeps it (domain/send_plan)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import Event, InviteSendRun
from dispatch_service.domain.send_plan import Venue


async def venue_of(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> Venue | None:
    """The event's name, location, address and coordinates; None when the workspace has no
    such event (the caller's own lookups say NOT_FOUND)."""
    columns = (Event.name, Event.location, Event.address, Event.latitude, Event.longitude)
    row = (
        await session.execute(
            select(*columns).where(Event.id == event_id, Event.workspace_id == workspace_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return Venue(row.name, row.location, row.address, row.latitude, row.longitude)


async def store_send_plan(session: AsyncSession, run_id: uuid.UUID, plan: dict[str, Any]) -> None:
    """Keep the plan on the run (in StartRun's transaction, before anything is claimed)."""
    await session.execute(
        update(InviteSendRun).where(InviteSendRun.id == run_id).values(send_plan=plan)
    )
