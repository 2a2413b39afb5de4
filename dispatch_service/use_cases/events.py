"""Events and their audiences. Writes need an admin or parent_admin; reads any role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import Event
from dispatch_service.domain.actors import WRITERS
from dispatch_service.domain.audience import AudienceDefinition
from dispatch_service.domain.template_variables import is_time_zone
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.audience import (
    count_audience,
    load_audience,
    require_event,
    store_audience,
    unknown_guest_units,
)
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.events import get_event_for_update, insert_event, list_events
from dispatch_service.use_cases.acting import READERS, acting
from dispatch_service.use_cases.workspaces import text_violation

MAX_LOCATION = 500


@dataclass(frozen=True)
class EventChanges:
    """What UpdateEvent changes; None keeps the current value."""

    name: str | None = None
    starts_at: datetime | None = None
    location: str | None = None
    time_zone: str | None = None
    address: str | None = None
    coordinates: tuple[float, float] | None = None
    """(latitude, longitude)."""


@dataclass(frozen=True)
class EventPlace:
    """Where and in which time zone an event happens (CreateEvent's optional fields)."""

    time_zone: str = ""
    address: str = ""
    coordinates: tuple[float, float] | None = None


def _place_violations(
    time_zone: str | None, address: str | None, coordinates: tuple[float, float] | None
) -> list[FieldViolation]:
    violations = []
    if time_zone and not is_time_zone(time_zone.strip()):
        violations.append(
            FieldViolation("time_zone", "must be an IANA time zone such as Europe/Lisbon")
        )
    if address is not None and len(address) > MAX_LOCATION:
        violations.append(FieldViolation("address", f"must be at most {MAX_LOCATION} characters"))
    if coordinates is not None:
        latitude, longitude = coordinates
        if not -90 <= latitude <= 90:
            violations.append(FieldViolation("latitude", "must be -90 to 90"))
        if not -180 <= longitude <= 180:
            violations.append(FieldViolation("longitude", "must be -180 to 180"))
    return violations


def _place_values(
    time_zone: str | None, address: str | None, coordinates: tuple[float, float] | None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if time_zone:
        values["time_zone"] = time_zone.strip()
    if address is not None:
        values["address"] = address.strip()
    if coordinates is not None:
        values["latitude"], values["longitude"] = coordinates
    return values


def _check_texts(name: str | None, location: str | None) -> list[FieldViolation]:
    violations = []
    if name is not None and (v := text_violation("name", name)):
        violations.append(v)
    if location is not None and len(location) > MAX_LOCATION:
        violations.append(FieldViolation("location", f"must be at most {MAX_LOCATION} characters"))
    return violations


async def create_event(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    *,
    name: str,
    starts_at: datetime | None,
    location: str,
    place: EventPlace | None = None,
) -> Event:
    """A new event in the actor's workspace, audited as ``event.create``."""
    place = place or EventPlace()
    violations = _check_texts(name, location)
    violations += _place_violations(place.time_zone, place.address, place.coordinates)
    if starts_at is None:
        violations.append(FieldViolation("starts_at", "is required"))
    if violations or starts_at is None:
        raise InvalidArgument(*violations)
    async with acting(sessions, actor_id, WRITERS, "create events") as (session, actor):
        event = await insert_event(
            session,
            workspace_id=actor.workspace_id,
            name=name.strip(),
            starts_at=starts_at,
            location=location.strip(),
            **_place_values(place.time_zone, place.address or None, place.coordinates),
        )
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="event.create",
            subject_type="event",
            subject_id=event.id,
            details={
                "name": event.name,
                "starts_at": event.starts_at,
                "location": event.location,
                "time_zone": event.time_zone,
                "address": event.address,
                "latitude": event.latitude,
                "longitude": event.longitude,
            },
        )
    return event


async def update_event(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    event_id: uuid.UUID,
    changes: EventChanges,
) -> Event:
    """Apply the non-empty changes, audited as ``event.update`` with before/after values."""
    violations = _check_texts(changes.name, changes.location)
    violations += _place_violations(changes.time_zone, changes.address, changes.coordinates)
    if violations:
        raise InvalidArgument(*violations)
    async with acting(sessions, actor_id, WRITERS, "update events") as (session, actor):
        event = await get_event_for_update(session, actor.workspace_id, event_id)
        wanted = {
            "name": changes.name.strip() if changes.name is not None else None,
            "starts_at": changes.starts_at,
            "location": changes.location.strip() if changes.location is not None else None,
            **_place_values(changes.time_zone, changes.address, changes.coordinates),
        }
        changed = {
            field: {"from": getattr(event, field), "to": value}
            for field, value in wanted.items()
            if value is not None and value != getattr(event, field)
        }
        for field, change in changed.items():
            setattr(event, field, change["to"])
        if changed:
            event.updated_at = datetime.now(UTC)
            record_audit(
                session,
                workspace_id=actor.workspace_id,
                actor_id=actor.member_id,
                action="event.update",
                subject_type="event",
                subject_id=event.id,
                details=changed,
            )
        await session.flush()
    return event


async def list_workspace_events(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID
) -> list[Event]:
    """The actor's workspace's events, soonest first."""
    async with acting(sessions, actor_id, READERS, "list events") as (session, actor):
        return await list_events(session, actor.workspace_id)


def _id_violations(audience: AudienceDefinition, unknown: set[uuid.UUID]) -> list[FieldViolation]:
    fields = (
        ("audience.guest_unit_ids", audience.guest_unit_ids),
        ("audience.include_guest_unit_ids", audience.include_guest_unit_ids),
        ("audience.exclude_guest_unit_ids", audience.exclude_guest_unit_ids),
    )
    return [
        FieldViolation(f"{field}[{index}]", f"no household {unit_id} in this workspace")
        for field, ids in fields
        for index, unit_id in enumerate(ids)
        if unit_id in unknown
    ]


async def set_event_audience(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    event_id: uuid.UUID,
    audience: AudienceDefinition,
) -> tuple[AudienceDefinition, int]:
    """Replace the event's audience (every listed household must be in the workspace).

    Returns the stored definition and how many households it resolves to now; audited as
    ``audience.set``.
    """
    async with acting(sessions, actor_id, WRITERS, "set audiences") as (session, actor):
        await get_event_for_update(session, actor.workspace_id, event_id)
        unknown = await unknown_guest_units(
            session, actor.workspace_id, audience.listed_guest_unit_ids()
        )
        if unknown:
            raise InvalidArgument(*_id_violations(audience, unknown))
        await store_audience(session, actor.workspace_id, event_id, audience)
        # Answer what was stored (ids in their stored order), exactly what GetEventAudience shows.
        stored = await load_audience(session, actor.workspace_id, event_id)
        assert stored is not None
        count = await count_audience(session, actor.workspace_id, event_id)
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="audience.set",
            subject_type="event",
            subject_id=event_id,
            details={
                "mode": audience.mode.value,
                "tags": list(audience.tags),
                "sides": list(audience.sides),
                "guest_unit_ids": list(audience.guest_unit_ids),
                "include_guest_unit_ids": list(audience.include_guest_unit_ids),
                "exclude_guest_unit_ids": list(audience.exclude_guest_unit_ids),
                "resolved_guest_unit_count": count,
            },
        )
    return stored, count


async def get_event_audience(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, event_id: uuid.UUID
) -> tuple[AudienceDefinition | None, int]:
    """The event's stored audience (None when never set) and its household count now."""
    async with acting(sessions, actor_id, READERS, "read audiences") as (session, actor):
        await require_event(session, actor.workspace_id, event_id)
        audience = await load_audience(session, actor.workspace_id, event_id)
        count = await count_audience(session, actor.workspace_id, event_id) if audience else 0
        return audience, count
