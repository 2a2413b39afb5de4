"""Rich invitations end to end, in-process: a template synced from the sandbox with an IMAGE
header, a named body, quick replies and a URL button; PrecheckSend, StartRun with the invitation
card, the real dispatcher sending to the sandbox, which checks every send against the template's
definition as Meta does (a wrong header would be 132012) and accepts them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.dispatcher.worker import Dispatcher
from dispatch_service.domain.send_plan import HeaderMedia
from dispatch_service.errors import InvalidArgument
from dispatch_service.providers.meta import MetaCloudProvider, build_http_client
from dispatch_service.providers.meta_templates import MetaTemplateCatalog
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from dispatch_service.use_cases.runs import start_run, start_run_command
from dispatch_service.use_cases.templates import sync_templates
from sandbox.scenario import Scenario
from sandbox.service import SandboxService
from sandbox.testing import TEST_ACCESS_TOKEN, local_settings, serve
from tests.integration.dispatch_support import (
    RunningDispatcher,
    World,
    seed_world,
    wait_for,
)
from tests.integration.dispatch_support import (
    test_config as dispatcher_config,
)

WABA = "102290129340398"
CARD = {
    "name": "event_invitation",
    "language": "en_US",
    "category": "MARKETING",
    "parameter_format": "named",
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1h"]}},
        {"type": "BODY", "text": "Hi {{guest_name}}, join us on {{event_date}}!"},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "I'll be there"},
                {"type": "QUICK_REPLY", "text": "Can't make it"},
                {"type": "URL", "text": "RSVP", "url": "https://e.example/r/{{1}}"},
            ],
        },
    ],
}
IMAGE = HeaderMedia(kind="image", link="https://cdn.example/card.jpg")


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[str, SandboxService]]:
    scenario = Scenario.model_validate({"seed": 1, "templates": [CARD]})
    async with serve(local_settings(waba_id=WABA), scenario=scenario) as running:
        yield running.base_url, running.service


async def synced_world(
    database_url: str, sessions: async_sessionmaker[AsyncSession], base_url: str
) -> World:
    world = seed_world(database_url, ["+14155550101", "+14155550102"])
    async with httpx.AsyncClient(timeout=5.0) as http:
        catalog = MetaTemplateCatalog(
            http, base_url=base_url, api_version="v21.0", access_token=TEST_ACCESS_TOKEN
        )
        await sync_templates(sessions, world.parent_admin, catalog, WABA)
    return world


async def start(
    sessions: async_sessionmaker[AsyncSession], world: World, media: HeaderMedia | None
) -> Any:
    event, template = str(world.event_id), str(world.template_id)
    precheck = await precheck_send(
        sessions, precheck_command(world.parent_admin, event, template, 0, []), 3600
    )
    command = start_run_command(
        world.parent_admin, str(precheck.precheck_id), "k", header_media=media
    )
    return await start_run(sessions, command)


async def test_an_image_invitation_with_buttons_is_accepted_by_the_sandbox(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    sandbox: tuple[str, SandboxService],
) -> None:
    base_url, service = sandbox
    world = await synced_world(database_url, sessions, base_url)
    started = await start(sessions, world, IMAGE)
    client = build_http_client(timeout_seconds=5.0, connect_timeout_seconds=2.0, max_connections=10)
    provider = MetaCloudProvider(
        client, base_url=base_url, api_version="v21.0", access_token=TEST_ACCESS_TOKEN
    )
    try:
        async with RunningDispatcher(Dispatcher(sessions, provider, dispatcher_config())):

            async def sent() -> bool:
                async with sessions() as session:
                    states = list(
                        await session.scalars(
                            text("SELECT state FROM invite_message WHERE run_id = :r"),
                            {"r": started.run.id},
                        )
                    )
                return bool(states) and all(s != "queued" and s != "sending" for s in states)

            await wait_for(sent, what="every message sent")
    finally:
        await client.aclose()

    assert not service.ledger.rejected, dict(service.ledger.rejected)
    entries = service.ledger.entries
    assert len(entries) == 2
    header = json.loads(entries[0].header_parameters[0])
    assert header == {"type": "image", "image": {"link": "https://cdn.example/card.jpg"}}
    async with sessions() as session:
        message_ids = {
            str(m)
            for m in await session.scalars(
                text("SELECT id FROM invite_message WHERE run_id = :r"), {"r": started.run.id}
            )
        }
    assert {e.callback_data for e in entries} == message_ids


async def test_start_run_refuses_a_missing_or_mismatched_media(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    sandbox: tuple[str, SandboxService],
) -> None:
    world = await synced_world(database_url, sessions, sandbox[0])
    with pytest.raises(InvalidArgument, match="IMAGE header: pass its media"):
        await start(sessions, world, None)
    with pytest.raises(InvalidArgument, match="header is IMAGE, not video"):
        await start(sessions, world, HeaderMedia(kind="video", media_id="1234"))
    with pytest.raises(InvalidArgument, match="https"):
        await start(sessions, world, HeaderMedia(kind="image", link="http://x/a.jpg"))
    async with sessions() as session:
        runs = await session.scalar(text("SELECT count(*) FROM invite_send_run"))
    assert runs == 0
