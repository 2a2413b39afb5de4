"""Events in Postgres."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import Event
from dispatch_service.errors import NotFound


async def insert_event(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    name: str,
    starts_at: datetime,
    location: str,
    **place: Any,
) -> Event:
    """A new event (flushed, with its id and timestamps); `place`: time_zone, address,
    latitude, longitude."""
    event = Event(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        name=name,
        starts_at=starts_at,
        location=location,
        **place,
    )
    session.add(event)
    await session.flush()
    await session.refresh(event)
    return event


async def get_event_for_update(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> Event:
    """The event, locked, or NotFound (another workspace's event looks the same)."""
    event = await session.scalar(
        select(Event)
        .where(Event.id == event_id, Event.workspace_id == workspace_id)
        .with_for_update()
    )
    if event is None:
        raise NotFound("no such event in this workspace", reason="EVENT_NOT_FOUND")
    return event


async def list_events(session: AsyncSession, workspace_id: uuid.UUID) -> list[Event]:
    """The workspace's events, soonest first."""
    events = await session.scalars(
        select(Event).where(Event.workspace_id == workspace_id).order_by(Event.starts_at, Event.id)
    )
    return list(events)
