"""PrecheckSend's template step on real Postgres: a template the run cannot send as Meta holds
it is refused with one field violation per problem, before anything is stored; a category
change, a falling quality and a hand registration are shown as notes."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from grpc import aio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2
from dispatch_service.errors import InvalidArgument
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from tests.integration.conftest import ApiClient, code_of
from tests.integration.dispatch_support import World, seed_world

RICH = [
    {"type": "HEADER", "format": "LOCATION"},
    {"type": "BODY", "text": "Hi {{1}} on {{2}}"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Yes"},
            {"type": "COPY_CODE", "example": "ABC"},
        ],
    },
]


async def set_template(
    sessions: async_sessionmaker[AsyncSession], world: World, **values: Any
) -> None:
    assignments = ", ".join(
        f"{k} = CAST(:{k} AS jsonb)" if k == "components" else f"{k} = :{k}" for k in values
    )
    params = {k: json.dumps(v) if k == "components" else v for k, v in values.items()}
    async with sessions() as session, session.begin():
        await session.execute(
            text(f"UPDATE template SET {assignments} WHERE id = :id"),
            {**params, "id": world.template_id},
        )


async def precheck(
    sessions: async_sessionmaker[AsyncSession], world: World, fmt: str = "positional"
) -> Any:
    command = precheck_command(
        world.parent_admin, str(world.event_id), str(world.template_id), 0, []
    )
    return await precheck_send(sessions, command, 3600, fmt)


async def prechecks_stored(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM precheck")) or 0)


async def test_a_template_needing_what_the_run_cannot_send_is_refused_field_by_field(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    await set_template(sessions, world, source="meta", components=RICH)

    with pytest.raises(InvalidArgument) as refused:
        await precheck(sessions, world)

    fields = [v.field for v in refused.value.violations]
    assert fields == ["event.coordinates", "template.buttons[1]"]
    assert "LOCATION header" in refused.value.violations[0].description
    assert await prechecks_stored(sessions) == 0
    # With coordinates on the event, only the copy-code button remains.
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE event SET latitude = 38.7, longitude = -9.1 WHERE id = :id"),
            {"id": world.event_id},
        )
    with pytest.raises(InvalidArgument) as placed:
        await precheck(sessions, world)
    assert [v.field for v in placed.value.violations] == ["template.buttons[1]"]


async def test_a_template_deleted_on_meta_is_refused(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE template SET source = 'meta', deleted_on_meta_at = now() WHERE id = :id"),
            {"id": world.template_id},
        )
    with pytest.raises(InvalidArgument, match="deleted on Meta"):
        await precheck(sessions, world)


async def test_category_change_and_quality_are_shown_at_precheck(
    grpc_api: ApiClient, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    await set_template(
        sessions,
        world,
        source="meta",
        category="MARKETING",
        previous_category="UTILITY",
        quality="YELLOW",
        components=[{"type": "BODY", "text": "Hi {{1}} on {{2}}"}, {"type": "FOOTER", "text": "x"}],
    )
    reply = await grpc_api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=grpc_api.md(str(world.parent_admin)),
    )
    template = reply.template
    assert (template.name, template.language, template.source) == (
        "event_invitation",
        "en_US",
        "meta",
    )
    assert template.category == types_pb2.TEMPLATE_CATEGORY_MARKETING
    assert template.previous_category == types_pb2.TEMPLATE_CATEGORY_UTILITY
    assert template.quality == "YELLOW"
    assert list(template.notes) == [
        "Meta changed the category from UTILITY to MARKETING (pricing and opt-in rules follow "
        "the new one)",
        "quality is YELLOW: Meta may pause the template (132015)",
    ]


async def test_precheck_refusal_over_grpc_is_invalid_argument(
    grpc_api: ApiClient, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    await set_template(sessions, world, source="meta", components=RICH)
    with pytest.raises(aio.AioRpcError) as refused:
        await grpc_api.dispatch.PrecheckSend(
            pb.PrecheckSendRequest(
                event_id=str(world.event_id), template_id=str(world.template_id)
            ),
            metadata=grpc_api.md(str(world.parent_admin)),
        )
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert "event.coordinates" in (refused.value.details() or "")
