"""Event audiences in Postgres: storing a definition, and THE recipient resolver.

`audience_select` is the one code path that turns an event's stored audience into households
and their contacts (one SQL statement). PrecheckSend evaluates and stores it inside Postgres and
the run starts from that stored snapshot, so their counts never drift; `resolve_audience` reads
the same statement into Python.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    delete,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import (
    Event,
    EventAudience,
    EventAudienceOverride,
    GuestUnit,
    GuestUnitTag,
    Person,
    Tag,
)
from common.vocabulary import AudienceMode, AudienceOverrideKind, PhoneStatus
from dispatch_service.domain.audience import AudienceDefinition, AudienceTarget
from dispatch_service.errors import FailedPrecondition, NotFound

Override = EventAudienceOverride


async def require_event(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> None:
    """NotFound unless `event_id` is an event of `workspace_id`."""
    found = await session.scalar(
        select(Event.id).where(Event.id == event_id, Event.workspace_id == workspace_id)
    )
    if found is None:
        raise NotFound("no such event in this workspace", reason="EVENT_NOT_FOUND")


async def load_audience(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> AudienceDefinition | None:
    """The event's stored audience, None when none was set; NotFound for an unknown event."""
    await require_event(session, workspace_id, event_id)
    stored = await session.get(EventAudience, event_id)
    if stored is None:
        return None
    rows = (
        await session.execute(
            select(Override.guest_unit_id, Override.kind)
            .where(Override.event_id == event_id)
            .order_by(Override.kind, Override.guest_unit_id)
        )
    ).all()
    by_kind = {
        kind: tuple(r.guest_unit_id for r in rows if r.kind == kind)
        for kind in AudienceOverrideKind
    }
    return AudienceDefinition(
        mode=AudienceMode(stored.mode),
        tags=tuple(stored.tags),
        sides=tuple(stored.sides),
        guest_unit_ids=by_kind[AudienceOverrideKind.MEMBER],
        include_guest_unit_ids=by_kind[AudienceOverrideKind.INCLUDE],
        exclude_guest_unit_ids=by_kind[AudienceOverrideKind.EXCLUDE],
    )


async def store_audience(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    event_id: uuid.UUID,
    audience: AudienceDefinition,
) -> None:
    """Replace the event's audience (the caller checked the event and the household ids)."""
    await session.execute(delete(Override).where(Override.event_id == event_id))
    await session.execute(delete(EventAudience).where(EventAudience.event_id == event_id))
    await session.execute(
        insert(EventAudience).values(
            event_id=event_id,
            workspace_id=workspace_id,
            mode=audience.mode.value,
            tags=list(audience.tags),
            sides=list(audience.sides),
            updated_at=datetime.now(UTC),
        )
    )
    listed = [
        *((AudienceOverrideKind.MEMBER, i) for i in audience.guest_unit_ids),
        *((AudienceOverrideKind.INCLUDE, i) for i in audience.include_guest_unit_ids),
        *((AudienceOverrideKind.EXCLUDE, i) for i in audience.exclude_guest_unit_ids),
    ]
    if listed:
        await session.execute(
            insert(Override),
            [{"event_id": event_id, "guest_unit_id": i, "kind": k.value} for k, i in listed],
        )


async def unknown_guest_units(
    session: AsyncSession, workspace_id: uuid.UUID, ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """The ids among `ids` that are not households of `workspace_id`."""
    if not ids:
        return set()
    found = await session.scalars(
        select(GuestUnit.id).where(GuestUnit.workspace_id == workspace_id, GuestUnit.id.in_(ids))
    )
    return ids - set(found)


# The resolver is a hot path (100,000 households): it selects Core table columns, so rows come
# back as plain Rows without ORM result processing.
GU = cast(Table, GuestUnit.__table__)
PERSON = cast(Table, Person.__table__)
OVERRIDE = cast(Table, EventAudienceOverride.__table__)
TAG = cast(Table, Tag.__table__)
UNIT_TAG = cast(Table, GuestUnitTag.__table__)


def _listed(event_id: uuid.UUID, kind: AudienceOverrideKind) -> ColumnElement[bool]:
    return GU.c.id.in_(
        select(OVERRIDE.c.guest_unit_id).where(
            OVERRIDE.c.event_id == event_id, OVERRIDE.c.kind == kind.value
        )
    )


def _base_set(
    workspace_id: uuid.UUID, event_id: uuid.UUID, audience: AudienceDefinition
) -> ColumnElement[bool]:
    if audience.mode is AudienceMode.ALL:
        return true()
    if audience.mode is AudienceMode.SIDES:
        return GU.c.side.in_(audience.sides) if audience.sides else false()
    if audience.mode is AudienceMode.TAGS:
        tagged = (
            select(UNIT_TAG.c.guest_unit_id)
            .join(TAG, TAG.c.id == UNIT_TAG.c.tag_id)
            .where(TAG.c.workspace_id == workspace_id, TAG.c.name.in_(audience.tags))
        )
        return GU.c.id.in_(tagged)
    return _listed(event_id, AudienceOverrideKind.MEMBER)


def _selected(
    workspace_id: uuid.UUID, event_id: uuid.UUID, audience: AudienceDefinition
) -> ColumnElement[bool]:
    included = or_(
        _base_set(workspace_id, event_id, audience), _listed(event_id, AudienceOverrideKind.INCLUDE)
    )
    return and_(
        GU.c.workspace_id == workspace_id,
        included,
        not_(_listed(event_id, AudienceOverrideKind.EXCLUDE)),
    )


async def audience_select(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    event_id: uuid.UUID,
    only_units: frozenset[uuid.UUID] | None = None,
) -> Select[Any]:
    """THE recipient resolver, as one SQL statement: the event's households with their designated
    contacts, one row each, numbered in audience order.

    * Base set by mode (all / tags / sides / explicit), plus include overrides, minus exclude
      overrides (exclusion wins).
    * Inactive households, and households whose contact is inactive, are returned with
      ``active = false`` (every mode, ALL included) so a precheck can report ``guest_inactive``.
      A household with no contact has ``person_id`` NULL, ``phone_status`` 'missing' and
      ``active`` = the household's own flag.
    * ``position`` (0-based) orders by household name (byte order, independent of the database
      locale), then id.

    Columns: guest_unit_id, guest_unit_name, person_id, display_name, phone_e164, phone_status,
    active, position. PrecheckSend evaluates and stores it inside Postgres (as a CTE);
    `resolve_audience` reads it into Python. Raises NotFound when the event is not in the
    workspace, and FailedPrecondition (reason ``AUDIENCE_NOT_SET``) when the event has no stored
    audience: an unset audience is an operator mistake to report, never an empty send.
    `only_units` keeps just those households of it (ResendRun's fresh precheck).
    """
    audience = await load_audience(session, workspace_id, event_id)
    if audience is None:
        raise FailedPrecondition(
            "the event has no audience; set one with SetEventAudience", reason="AUDIENCE_NOT_SET"
        )
    # Byte order ("C" collation): the same order whatever locale the database was created with.
    order = (GU.c.name.collate("C"), GU.c.id)
    statement = (
        select(
            GU.c.id.label("guest_unit_id"),
            GU.c.name.label("guest_unit_name"),
            PERSON.c.id.label("person_id"),
            func.coalesce(PERSON.c.display_name, "").label("display_name"),
            PERSON.c.phone_e164.label("phone_e164"),
            func.coalesce(PERSON.c.phone_status, PhoneStatus.MISSING.value).label("phone_status"),
            and_(GU.c.active, PERSON.c.active.is_not(False)).label("active"),
            (func.row_number().over(order_by=order) - 1).label("position"),
            GU.c.preferred_language.label("preferred_language"),
        )
        .select_from(GU.outerjoin(PERSON, PERSON.c.id == GU.c.contact_person_id))
        .where(_selected(workspace_id, event_id, audience))
    )
    if only_units is not None:
        statement = statement.where(GU.c.id.in_(sorted(only_units)))
    return statement


async def resolve_audience(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> list[AudienceTarget]:
    """The rows of `audience_select` as targets, in audience order (see there for the rules)."""
    resolved = (await audience_select(session, workspace_id, event_id)).subquery("resolved")
    statement = select(
        resolved.c.guest_unit_id,
        resolved.c.guest_unit_name,
        resolved.c.person_id,
        resolved.c.display_name,
        resolved.c.phone_e164,
        resolved.c.phone_status,
        resolved.c.active,
        resolved.c.preferred_language,
    ).order_by(resolved.c.position)
    rows: Sequence[Any] = (await session.execute(statement)).all()
    statuses = {s.value: s for s in PhoneStatus}
    return [
        AudienceTarget(
            guest_unit_id=unit_id,
            guest_unit_name=name,
            person_id=person_id,
            display_name=display_name,
            phone_e164=phone,
            phone_status=statuses[status],
            active=bool(active),
            preferred_language=language,
        )
        for unit_id, name, person_id, display_name, phone, status, active, language in rows
    ]


async def count_audience(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> int:
    """How many households the stored audience resolves to now (0 when none is set)."""
    audience = await load_audience(session, workspace_id, event_id)
    if audience is None:
        return 0
    count = await session.scalar(
        select(func.count()).select_from(GU).where(_selected(workspace_id, event_id, audience))
    )
    return int(count or 0)
