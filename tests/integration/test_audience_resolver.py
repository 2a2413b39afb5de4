"""The one recipient resolver on real Postgres: modes, overrides, inactive households, order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import (
    Event,
    GuestUnit,
    GuestUnitMembership,
    GuestUnitTag,
    Person,
    Tag,
    Workspace,
)
from common.vocabulary import AudienceMode, PhoneStatus
from dispatch_service.domain.audience import AudienceDefinition
from dispatch_service.errors import FailedPrecondition, NotFound
from dispatch_service.persistence.audience import (
    count_audience,
    load_audience,
    resolve_audience,
    store_audience,
)


class World:
    """A workspace with households written straight to the tables."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.workspace_id = uuid.uuid4()
        self.event_id = uuid.uuid4()
        self.units: dict[str, uuid.UUID] = {}

    async def setup(self) -> None:
        self.session.add(
            Workspace(
                id=self.workspace_id, name="w", default_region="US", sender_phone_number_id="1"
            )
        )
        await self.session.flush()
        self.session.add(
            Event(
                id=self.event_id,
                workspace_id=self.workspace_id,
                name="wedding",
                starts_at=datetime(2031, 6, 1, tzinfo=UTC),
            )
        )
        await self.session.flush()

    async def household(
        self,
        name: str,
        *,
        phone: str | None = "+12025550100",
        status: PhoneStatus = PhoneStatus.VALID,
        side: str | None = None,
        tags: tuple[str, ...] = (),
        active: bool = True,
        person_active: bool = True,
        contact: bool = True,
    ) -> uuid.UUID:
        unit = GuestUnit(id=uuid.uuid4(), workspace_id=self.workspace_id, name=name, side=side)
        unit.active = active
        self.session.add(unit)
        await self.session.flush()
        if contact:
            member = Person(
                id=uuid.uuid4(),
                workspace_id=self.workspace_id,
                display_name=f"{name} contact",
                phone_status=status.value,
                phone_e164=phone if status is PhoneStatus.VALID else None,
                raw_phone=phone or "",
                active=person_active,
            )
            self.session.add(member)
            await self.session.flush()
            self.session.add(
                GuestUnitMembership(
                    workspace_id=self.workspace_id, guest_unit_id=unit.id, person_id=member.id
                )
            )
            unit.contact_person_id = member.id
        for tag_name in tags:
            tag = Tag(id=uuid.uuid4(), workspace_id=self.workspace_id, name=tag_name)
            self.session.add(tag)
            await self.session.flush()
            self.session.add(GuestUnitTag(guest_unit_id=unit.id, tag_id=tag.id))
        await self.session.flush()
        self.units[name] = unit.id
        return unit.id

    async def audience(self, audience: AudienceDefinition) -> list[str]:
        await store_audience(self.session, self.workspace_id, self.event_id, audience)
        targets = await resolve_audience(self.session, self.workspace_id, self.event_id)
        return [t.guest_unit_name for t in targets]


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[World]:
    async with sessions() as session:
        built = World(session)
        await built.setup()
        yield built


async def test_all_mode_returns_every_household_in_name_order(world: World) -> None:
    await world.household("Carter")
    await world.household("Adams")
    await world.household("Baker", active=False)
    assert await world.audience(AudienceDefinition(AudienceMode.ALL)) == [
        "Adams",
        "Baker",
        "Carter",
    ]


async def test_inactive_households_and_contacts_are_returned_inactive(world: World) -> None:
    await world.household("Active")
    await world.household("Gone", active=False)
    await world.household("Left", person_active=False)
    await world.household("Nobody", contact=False)
    await store_audience(
        world.session, world.workspace_id, world.event_id, AudienceDefinition(AudienceMode.ALL)
    )
    targets = {
        t.guest_unit_name: t
        for t in await resolve_audience(world.session, world.workspace_id, world.event_id)
    }
    assert targets["Active"].active
    assert not targets["Gone"].active
    assert not targets["Left"].active
    nobody = targets["Nobody"]
    assert (nobody.person_id, nobody.display_name, nobody.phone_e164) == (None, "", None)
    assert nobody.phone_status is PhoneStatus.MISSING
    assert nobody.active


async def test_contact_fields_come_from_the_designated_person(world: World) -> None:
    await world.household("Valid", phone="+12025550111")
    await world.household("Bad", phone="12", status=PhoneStatus.MALFORMED)
    await store_audience(
        world.session, world.workspace_id, world.event_id, AudienceDefinition(AudienceMode.ALL)
    )
    bad, valid = await resolve_audience(world.session, world.workspace_id, world.event_id)
    assert (valid.display_name, valid.phone_e164, valid.phone_status) == (
        "Valid contact",
        "+12025550111",
        PhoneStatus.VALID,
    )
    assert (bad.phone_e164, bad.phone_status) == (None, PhoneStatus.MALFORMED)
    assert bad.person_id is not None


async def test_tags_mode_matches_any_tag(world: World) -> None:
    await world.household("A", tags=("family",))
    await world.household("B", tags=("friends",))
    await world.household("C", tags=("work",))
    audience = AudienceDefinition(AudienceMode.TAGS, tags=("family", "friends"))
    assert await world.audience(audience) == ["A", "B"]


async def test_sides_mode_matches_any_side(world: World) -> None:
    await world.household("A", side="bride")
    await world.household("B", side="groom")
    await world.household("C")
    assert await world.audience(AudienceDefinition(AudienceMode.SIDES, sides=("groom",))) == ["B"]


async def test_explicit_mode_with_include_and_exclude_where_exclusion_wins(world: World) -> None:
    a = await world.household("A")
    b = await world.household("B")
    c = await world.household("C")
    d = await world.household("D")
    audience = AudienceDefinition(
        AudienceMode.EXPLICIT,
        guest_unit_ids=(a, b),
        include_guest_unit_ids=(c, d),
        exclude_guest_unit_ids=(b, d),
    )
    assert await world.audience(audience) == ["A", "C"]


async def test_other_workspaces_households_never_leak_in(
    world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await world.household("Mine")
    other = World(world.session)
    await other.setup()
    await other.household("Theirs")
    assert await world.audience(AudienceDefinition(AudienceMode.ALL)) == ["Mine"]
    assert await count_audience(world.session, world.workspace_id, world.event_id) == 1


async def test_unknown_event_is_not_found_and_unset_audience_is_a_failed_precondition(
    world: World,
) -> None:
    with pytest.raises(NotFound):
        await resolve_audience(world.session, world.workspace_id, uuid.uuid4())
    other = World(world.session)
    await other.setup()
    with pytest.raises(NotFound):  # another workspace's event looks unknown
        await resolve_audience(world.session, world.workspace_id, other.event_id)
    with pytest.raises(FailedPrecondition):
        await resolve_audience(world.session, world.workspace_id, world.event_id)
    assert await count_audience(world.session, world.workspace_id, world.event_id) == 0


async def test_stored_definition_round_trips(world: World) -> None:
    a = await world.household("A")
    b = await world.household("B")
    audience = AudienceDefinition(
        AudienceMode.TAGS, tags=("x", "y"), include_guest_unit_ids=(a,), exclude_guest_unit_ids=(b,)
    )
    await store_audience(world.session, world.workspace_id, world.event_id, audience)
    assert await load_audience(world.session, world.workspace_id, world.event_id) == audience
    replaced = AudienceDefinition(AudienceMode.SIDES, sides=("bride",))
    await store_audience(world.session, world.workspace_id, world.event_id, replaced)
    assert await load_audience(world.session, world.workspace_id, world.event_id) == replaced
