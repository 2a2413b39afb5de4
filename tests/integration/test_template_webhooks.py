"""Template webhooks through ApplyStatus over real gRPC: each field updates the registry, a
PAUSED template pauses the runs using it (reason shown by GetRunStatus), ResumeRun waits for
APPROVED, late and replayed webhooks change nothing, and unknown accounts match nothing."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2
from tests.integration.conftest import INGESTOR_TOKEN, ApiClient, code_of
from tests.integration.dispatch_support import (
    World,
    precheck_and_start,
    runs_paused,
    seed_world,
)

WABA = "102290129340398"
T0 = 1_780_050_000
STATUS = "message_template_status_update"


def hook(field: str = STATUS, at: int = T0, **values: Any) -> pb.TemplateUpdate:
    return pb.TemplateUpdate(
        waba_id=values.pop("waba_id", WABA),
        field=field,
        meta_template_id=values.pop("meta_template_id", "1689556908129832"),
        name=values.pop("name", "event_invitation"),
        language=values.pop("language", "en_US"),
        provider_timestamp=Timestamp(seconds=at),
        **values,
    )


async def apply(api: ApiClient, *updates: pb.TemplateUpdate) -> pb.ApplyStatusResponse:
    reply: pb.ApplyStatusResponse = await api.dispatch.ApplyStatus(
        pb.ApplyStatusRequest(template_updates=updates), metadata=api.md(token=INGESTOR_TOKEN)
    )
    return reply


async def template_row(sessions: async_sessionmaker[AsyncSession], world: World) -> Any:
    async with sessions() as session:
        return (
            await session.execute(
                text(
                    "SELECT status, status_reason, quality, category, previous_category,"
                    " pending_category, components, variables FROM template WHERE id = :id"
                ),
                {"id": world.template_id},
            )
        ).one()


async def with_waba(sessions: async_sessionmaker[AsyncSession], world: World) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE workspace SET waba_id = :waba WHERE id = :id"),
            {"waba": WABA, "id": world.workspace_id},
        )


@pytest.fixture
async def world(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> World:
    seeded = seed_world(database_url, ["+14155550101", "+14155550102"])
    await with_waba(sessions, seeded)
    return seeded


async def test_paused_template_pauses_its_run_until_approved_again(
    grpc_api: ApiClient, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    started = await precheck_and_start(sessions, world)
    run_id = str(started.run.id)
    actor = str(world.parent_admin)
    paused_before = runs_paused()

    reply = await apply(
        grpc_api,
        hook(
            event="PAUSED",
            reason="NONE",
            detail="FIRST_PAUSE: Template paused due to low quality.",
        ),
    )

    assert list(reply.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_APPLIED]
    assert list(reply.paused_run_ids) == [run_id]
    assert runs_paused() == paused_before + 1
    shown = await grpc_api.dispatch.GetRunStatus(
        pb.GetRunStatusRequest(run_id=run_id), metadata=grpc_api.md(actor)
    )
    status = shown.status
    assert status.run.state == types_pb2.RUN_STATE_PAUSED
    assert status.run.pause_reason == (
        "template event_invitation (en_US) is PAUSED on Meta: "
        "FIRST_PAUSE: Template paused due to low quality."
    )
    row = await template_row(sessions, world)
    assert row.status == "PAUSED"

    with pytest.raises(aio.AioRpcError) as refused:
        await grpc_api.dispatch.ResumeRun(
            pb.ResumeRunRequest(run_id=run_id), metadata=grpc_api.md(actor)
        )
    assert code_of(refused.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert "PAUSED, not APPROVED" in (refused.value.details() or "")

    approved = await apply(grpc_api, hook(event="APPROVED", reason="NONE", at=T0 + 10_800))
    assert list(approved.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_APPLIED]
    assert not approved.paused_run_ids
    resumed = await grpc_api.dispatch.ResumeRun(
        pb.ResumeRunRequest(run_id=run_id), metadata=grpc_api.md(actor)
    )
    assert resumed.run.pause_reason == ""
    assert (await template_row(sessions, world)).status == "APPROVED"


async def test_late_and_replayed_status_webhooks_change_nothing(
    grpc_api: ApiClient, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    started = await precheck_and_start(sessions, world)
    approved = hook(event="APPROVED", reason="NONE", at=T0 + 60)
    assert list((await apply(grpc_api, approved)).template_outcomes) == [
        pb.TEMPLATE_UPDATE_OUTCOME_UNCHANGED  # it was APPROVED already
    ]
    late_pause = hook(event="PAUSED", reason="NONE", at=T0)
    reply = await apply(grpc_api, late_pause)
    assert list(reply.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_STALE]
    assert not reply.paused_run_ids
    assert (await template_row(sessions, world)).status == "APPROVED"
    async with sessions() as session:
        state = await session.scalar(
            text("SELECT state FROM invite_send_run WHERE id = :id"), {"id": started.run.id}
        )
    assert state == "queued"

    disabled = hook(event="DISABLED", reason="NONE", at=T0 + 120)
    first = await apply(grpc_api, disabled)
    again = await apply(grpc_api, disabled)  # the ingestor retrying the same batch
    assert list(first.paused_run_ids) == [str(started.run.id)]
    assert list(again.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_UNCHANGED]
    assert not again.paused_run_ids


async def test_quality_category_and_components_updates_change_the_registry(
    grpc_api: ApiClient, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reply = await apply(
        grpc_api,
        hook(
            "message_template_quality_update",
            new_quality="RED",
            language="en-US",  # Meta's webhook examples write en-US
        ),
        hook("template_category_update", correct_category="UTILITY", new_category="MARKETING"),
        hook(
            "message_template_components_update",
            body_text="Hello {{1}}, join us on {{2}}!",
            footer_text="Reply STOP to opt out",
            buttons=[pb.TemplateUpdateButton(type="QUICK_REPLY", text="Yes")],
        ),
    )
    assert list(reply.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_APPLIED] * 3
    row = await template_row(sessions, world)
    assert row.quality == "RED"
    assert row.category == "MARKETING"
    assert row.pending_category == "UTILITY"
    assert row.components == [
        {"type": "BODY", "text": "Hello {{1}}, join us on {{2}}!"},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Yes"}]},
    ]
    assert row.variables == ["guest_name", "event_date"]  # still two: the names stay

    done = await apply(
        grpc_api,
        hook(
            "template_category_update",
            at=T0 + 86_400,
            previous_category="MARKETING",
            new_category="UTILITY",
        ),
    )
    assert list(done.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_APPLIED]
    row = await template_row(sessions, world)
    assert (row.category, row.previous_category, row.pending_category) == (
        "UTILITY",
        "MARKETING",
        None,
    )
    async with sessions() as session:
        actions = list(
            await session.scalars(
                text("SELECT action FROM audit_entry WHERE subject_id = :id ORDER BY id"),
                {"id": str(world.template_id)},
            )
        )
    assert actions == ["template.webhook"] * 4


async def test_a_webhook_for_another_account_matches_nothing(
    grpc_api: ApiClient, world: World, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reply = await apply(grpc_api, hook(event="PAUSED", waba_id="999"))
    assert list(reply.template_outcomes) == [pb.TEMPLATE_UPDATE_OUTCOME_UNMATCHED]
    assert (await template_row(sessions, world)).status == "APPROVED"


async def test_a_template_update_with_an_unknown_field_is_refused_whole(
    grpc_api: ApiClient,
) -> None:
    with pytest.raises(aio.AioRpcError) as refused:
        await apply(grpc_api, hook("message_template_something"), hook(name=""))
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert "template_updates[0].field" in details
    assert "template_updates[1].name" in details
