"""SyncTemplates against the sandbox serving `GET /{waba-id}/message_templates`, over real gRPC:
every page is read, re-syncs update in place and say what changed, a template deleted on Meta
is marked (and the runs using it paused), hand-registered templates stay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from grpc import aio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import admin_pb2_grpc, types_pb2
from common.generated.invites.v1 import dispatch_pb2 as pb_dispatch
from dispatch_service.bootstrap import Deps
from dispatch_service.providers.meta_templates import MetaTemplateCatalog
from dispatch_service.server import build_server
from dispatch_service.settings import DispatchSettings
from sandbox.scenario import Scenario, TemplateSpec
from sandbox.service import SandboxService
from sandbox.testing import TEST_ACCESS_TOKEN, local_settings, serve
from tests.integration.admin_support import new_workspace
from tests.integration.conftest import ApiClient, code_of
from tests.integration.dispatch_support import precheck_and_start, runs_paused, seed_world
from tests.integration.factories import Seeder

WABA = "102290129340398"
INVITATION_CARD: dict[str, Any] = {
    "name": "event_invitation_v2",
    "language": "en_US",
    "category": "MARKETING",
    "parameter_format": "named",
    "quality": "GREEN",
    "body_params": 3,
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1h:ARb"]}},
        {
            "type": "BODY",
            "text": "Hi {{guest_name}}, you're invited to {{event_name}} on {{event_date}}.",
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "I'll be there"},
                {"type": "QUICK_REPLY", "text": "Can't make it"},
                {"type": "URL", "text": "Details", "url": "https://e.example.com/e/{{1}}"},
            ],
        },
    ],
}


def scenario() -> Scenario:
    """Five translations: a rich named invitation and four positional ones (three pages of 2)."""
    return Scenario.model_validate(
        {
            "seed": 1,
            "templates": [
                INVITATION_CARD,
                {"name": "event_invitation", "language": "en_US", "body_params": 2},
                {"name": "event_invitation", "language": "es", "body_params": 2},
                {"name": "reminder", "language": "en_US", "body_params": 1, "status": "PENDING"},
                {"name": "thanks", "language": "en_US", "category": "UTILITY"},
            ],
        }
    )


@dataclass
class SyncApi:
    """The gRPC API with a template catalog reading the sandbox, and the sandbox itself."""

    api: ApiClient
    sandbox: SandboxService

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        return self.api.admin

    async def sync(self, actor: str, waba_id: str = "") -> pb.SyncTemplatesResponse:
        reply: pb.SyncTemplatesResponse = await self.admin.SyncTemplates(
            pb.SyncTemplatesRequest(waba_id=waba_id), metadata=self.api.md(actor)
        )
        return reply

    def remove(self, name: str, language: str) -> None:
        kept = [
            t for t in self.sandbox.scenario.templates if (t.name, t.language) != (name, language)
        ]
        self.sandbox.use_scenario(self.sandbox.scenario.model_copy(update={"templates": kept}))


@pytest.fixture
async def sync_api(
    dispatch_settings: DispatchSettings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[SyncApi]:
    async with (
        serve(local_settings(waba_id=WABA), scenario=scenario()) as sandbox,
        httpx.AsyncClient(timeout=5.0) as http,
    ):
        catalog = MetaTemplateCatalog(
            http,
            base_url=sandbox.base_url,
            api_version="v21.0",
            access_token=TEST_ACCESS_TOKEN,
            page_size=2,
        )
        deps = Deps(
            settings=dispatch_settings, engine=engine, sessions=sessions, template_catalog=catalog
        )
        server, _health, port = build_server(dispatch_settings, deps)
        await server.start()
        target = f"127.0.0.1:{port}"
        channel = aio.insecure_channel(target)
        try:
            yield SyncApi(ApiClient(channel, target, dispatch_settings, sessions), sandbox.service)
        finally:
            await channel.close(None)
            await server.stop(None)


def by_key(reply: pb.SyncTemplatesResponse) -> dict[tuple[str, str], pb.TemplateSyncChange]:
    return {(c.template.name, c.template.language): c for c in reply.changes}


async def test_sync_reads_every_page_with_components_and_keeps_hand_registered_ones(
    sync_api: SyncApi,
) -> None:
    admin = (await new_workspace(sync_api.api)).admin.member_id
    manual = await sync_api.admin.RegisterTemplate(
        pb.RegisterTemplateRequest(
            template=pb.Template(
                name="offline_only",
                language="en",
                category=types_pb2.TEMPLATE_CATEGORY_UTILITY,
                variables=["guest_name"],
                status=types_pb2.TEMPLATE_STATUS_APPROVED,
            )
        ),
        metadata=sync_api.api.md(admin),
    )
    assert manual.template.source == pb.TEMPLATE_SOURCE_MANUAL

    reply = await sync_api.sync(admin, waba_id=WABA)

    assert reply.waba_id == WABA
    assert reply.read == 5  # three pages of at most 2
    assert not reply.skipped
    changes = by_key(reply)
    assert set(changes) == {
        ("event_invitation_v2", "en_US"),
        ("event_invitation", "en_US"),
        ("event_invitation", "es"),
        ("reminder", "en_US"),
        ("thanks", "en_US"),
    }
    assert {c.kind for c in changes.values()} == {pb.TEMPLATE_SYNC_KIND_CREATED}
    card = changes[("event_invitation_v2", "en_US")].template
    assert card.source == pb.TEMPLATE_SOURCE_META
    assert card.meta_template_id == str(TemplateSpec.model_validate(INVITATION_CARD).template_id)
    assert card.quality == "GREEN"
    assert card.parameter_format == pb.TEMPLATE_PARAMETER_FORMAT_NAMED
    assert card.status == types_pb2.TEMPLATE_STATUS_APPROVED
    assert list(card.variables) == ["guest_name", "event_name", "event_date"]
    assert [(c.type, c.format) for c in card.components] == [
        ("HEADER", "IMAGE"),
        ("BODY", ""),
        ("FOOTER", ""),
        ("BUTTONS", ""),
    ]
    assert "header_handle" in card.components[0].example_json
    assert [(b.type, b.text) for b in card.components[3].buttons] == [
        ("QUICK_REPLY", "I'll be there"),
        ("QUICK_REPLY", "Can't make it"),
        ("URL", "Details"),
    ]
    assert card.components[3].buttons[2].url == "https://e.example.com/e/{{1}}"
    positional = changes[("event_invitation", "es")].template
    assert positional.parameter_format == pb.TEMPLATE_PARAMETER_FORMAT_POSITIONAL
    assert list(positional.variables) == ["1", "2"]  # unnamed until an operator maps them
    assert changes[("reminder", "en_US")].template.status == types_pb2.TEMPLATE_STATUS_PENDING

    listed = await sync_api.admin.ListTemplates(
        pb.ListTemplatesRequest(), metadata=sync_api.api.md(admin)
    )
    sources = {(t.name, t.language): t.source for t in listed.templates}
    assert sources[("offline_only", "en")] == pb.TEMPLATE_SOURCE_MANUAL
    assert sources[("thanks", "en_US")] == pb.TEMPLATE_SOURCE_META
    assert len(sources) == 6


async def test_resync_updates_in_place_and_reports_what_changed(sync_api: SyncApi) -> None:
    admin = (await new_workspace(sync_api.api)).admin.member_id
    first = by_key(await sync_api.sync(admin, waba_id=WABA))
    card = TemplateSpec.model_validate(INVITATION_CARD)
    sync_api.sandbox.register_template(
        card.model_copy(update={"status": "PAUSED", "quality": "RED", "category": "UTILITY"})
    )

    second = by_key(await sync_api.sync(admin))  # the WABA id recorded by the first sync

    changed = second[("event_invitation_v2", "en_US")]
    assert changed.kind == pb.TEMPLATE_SYNC_KIND_UPDATED
    assert set(changed.fields) == {"category", "status", "quality"}
    assert (
        changed.template.template_id == first[("event_invitation_v2", "en_US")].template.template_id
    )
    assert changed.template.status == types_pb2.TEMPLATE_STATUS_PAUSED
    assert changed.template.category == types_pb2.TEMPLATE_CATEGORY_UTILITY
    assert changed.template.previous_category == types_pb2.TEMPLATE_CATEGORY_MARKETING
    others = [c for k, c in second.items() if k != ("event_invitation_v2", "en_US")]
    assert {c.kind for c in others} == {pb.TEMPLATE_SYNC_KIND_UNCHANGED}
    assert all(not c.fields for c in others)


async def test_a_template_deleted_on_meta_is_marked_and_the_run_using_it_paused(
    sync_api: SyncApi, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101", "+14155550102"])
    actor = str(world.parent_admin)
    first = by_key(await sync_api.sync(actor, waba_id=WABA))
    adopted = first[("event_invitation", "en_US")]
    # The hand-registered template is now Meta's, and keeps the names given to {{1}} and {{2}}.
    assert adopted.kind == pb.TEMPLATE_SYNC_KIND_UPDATED
    assert adopted.template.template_id == str(world.template_id)
    assert adopted.template.source == pb.TEMPLATE_SOURCE_META
    assert list(adopted.template.variables) == ["guest_name", "event_date"]
    started = await precheck_and_start(sessions, world)
    sync_api.remove("event_invitation", "en_US")

    reply = await sync_api.sync(actor)

    gone = by_key(reply)[("event_invitation", "en_US")]
    assert gone.kind == pb.TEMPLATE_SYNC_KIND_DELETED_ON_META
    assert gone.template.deleted_on_meta
    assert gone.template.status == types_pb2.TEMPLATE_STATUS_DISABLED
    assert list(gone.active_run_ids) == [str(started.run.id)]
    assert list(reply.paused_run_ids) == [str(started.run.id)]
    async with sessions() as session:
        state, reason = (
            await session.execute(
                text("SELECT state, pause_reason FROM invite_send_run WHERE id = :id"),
                {"id": started.run.id},
            )
        ).one()
        kept = await session.scalar(
            text("SELECT count(*) FROM template WHERE id = :id"), {"id": world.template_id}
        )
    assert state == "paused"
    assert reason == "template event_invitation (en_US) was deleted on Meta"
    assert kept == 1

    again = by_key(await sync_api.sync(actor))[("event_invitation", "en_US")]
    assert again.kind == pb.TEMPLATE_SYNC_KIND_DELETED_ON_META
    assert not again.fields  # already marked: nothing new


async def test_sync_needs_a_waba_id_and_reports_metas_refusal(sync_api: SyncApi) -> None:
    admin = (await new_workspace(sync_api.api)).admin.member_id
    with pytest.raises(aio.AioRpcError) as missing:
        await sync_api.sync(admin)
    assert code_of(missing.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert "waba_id" in (missing.value.details() or "")

    with pytest.raises(aio.AioRpcError) as unknown:
        await sync_api.sync(admin, waba_id="999")
    assert code_of(unknown.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert "HTTP 400" in (unknown.value.details() or "")

    with pytest.raises(aio.AioRpcError) as bad:
        await sync_api.sync(admin, waba_id="not-a-number")
    assert code_of(bad.value) == grpc.StatusCode.INVALID_ARGUMENT


async def test_viewers_cannot_sync(sync_api: SyncApi) -> None:
    world_admin = (await new_workspace(sync_api.api)).admin.member_id
    viewer = await sync_api.admin.AddMember(
        pb.AddMemberRequest(display_name="V", role=types_pb2.ROLE_VIEWER),
        metadata=sync_api.api.md(world_admin),
    )
    with pytest.raises(aio.AioRpcError) as denied:
        await sync_api.sync(viewer.member.member_id, waba_id=WABA)
    assert code_of(denied.value) == grpc.StatusCode.PERMISSION_DENIED
    assert uuid.UUID(viewer.member.member_id)


async def test_a_sync_finding_a_template_paused_pauses_the_runs_using_it(
    sync_api: SyncApi, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, ["+14155550101"])
    actor = str(world.parent_admin)
    await sync_api.sync(actor, waba_id=WABA)
    started = await precheck_and_start(sessions, world)
    spec = next(t for t in sync_api.sandbox.scenario.templates if t.name == "event_invitation")
    sync_api.sandbox.register_template(spec.model_copy(update={"status": "PAUSED"}))
    paused_before = runs_paused()

    reply = await sync_api.sync(actor)

    change = by_key(reply)[("event_invitation", "en_US")]
    assert change.kind == pb.TEMPLATE_SYNC_KIND_UPDATED
    assert list(change.fields) == ["status"]
    assert list(change.active_run_ids) == [str(started.run.id)]
    assert list(reply.paused_run_ids) == [str(started.run.id)]
    assert runs_paused() == paused_before + 1
    async with sessions() as session:
        reason = await session.scalar(
            text("SELECT pause_reason FROM invite_send_run WHERE id = :id"),
            {"id": started.run.id},
        )
    assert reason == "template event_invitation (en_US) is PAUSED on Meta (found by a sync)"


async def test_sync_reads_the_portfolio_messaging_limit_and_the_newest_word_wins(
    sync_api: SyncApi, database_url: str
) -> None:
    """SyncTemplates asks the sender's phone number for whatsapp_business_manager_messaging_limit
    (the sandbox answers TIER_2K for a limit of 2000) and records it on the workspace; an
    operator's later setting replaces it, a later read replaces that."""
    created = await new_workspace(sync_api.api)
    admin, workspace = created.admin.member_id, created.workspace.workspace_id
    scene = sync_api.sandbox.scenario
    sync_api.sandbox.use_scenario(
        scene.model_copy(
            update={"limits": scene.limits.model_copy(update={"messaging_limit": 2000})}
        )
    )

    def limit() -> tuple[Any, ...]:
        with Seeder(database_url) as seed:
            return seed.rows(
                "SELECT messaging_limit, messaging_limit_source FROM workspace WHERE id = %s",
                workspace,
            )[0]

    reply = await sync_api.sync(admin, waba_id=WABA)
    assert (reply.messaging_limit, list(reply.skipped)) == ("2000", [])
    assert limit() == (2000, "provider")

    await sync_api.api.dispatch.ConfigureSending(
        pb_dispatch.ConfigureSendingRequest(messaging_limit="250"),
        metadata=sync_api.api.md(admin),
    )
    assert limit() == (250, "operator")
    sync_api.sandbox.use_scenario(scene)  # Meta says: unlimited now
    assert (await sync_api.sync(admin)).messaging_limit == "unlimited"
    assert limit() == (None, "provider")
