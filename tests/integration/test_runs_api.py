"""The send path through the real gRPC server (guard, servicer, mapping, use cases): status
codes for bad input, roles and other workspaces, paging, the watch stream, the event view."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc import aio

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.conftest import ApiClient, code_of
from tests.integration.dispatch_support import World, seed_world
from tests.integration.factories import Seeder

PHONES = [f"+1415555{n:04d}" for n in range(7)]


async def precheck(api: ApiClient, world: World, actor: uuid.UUID | None = None) -> str:
    reply = await api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=api.md(str(actor or world.admin)),
    )
    return str(reply.precheck_id)


async def start(api: ApiClient, world: World, precheck_id: str, key: str = "k") -> pb.Run:
    reply = await api.dispatch.StartRun(
        pb.StartRunRequest(precheck_id=precheck_id, idempotency_key=key),
        metadata=api.md(str(world.parent_admin)),
    )
    return reply.run


async def failure(call: object) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return code_of(caught.value)


async def test_precheck_start_status_and_listing(database_url: str, grpc_api: ApiClient) -> None:
    world = seed_world(database_url, [*PHONES, None])
    reply = await grpc_api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(
            event_id=str(world.event_id), template_id=str(world.template_id), page_size=3
        ),
        metadata=grpc_api.md(str(world.admin)),
    )
    assert (reply.total_count, reply.eligible_count, reply.blocked_count) == (8, 7, 1)
    assert [(r.reason, r.count) for r in reply.blocked_by_reason] == [
        (types.REJECTION_REASON_NO_PHONE, 1)
    ]
    assert len(reply.recipients) == 3
    assert reply.expires_at.seconds > 0

    run = await start(grpc_api, world, reply.precheck_id)
    assert run.state == types.RUN_STATE_QUEUED
    status = (
        await grpc_api.dispatch.GetRunStatus(
            pb.GetRunStatusRequest(run_id=run.run_id), metadata=grpc_api.md(str(world.viewer))
        )
    ).status
    by_state = {c.state: c.count for c in status.by_state}
    assert len(by_state) == 8  # every state, zeros included
    assert by_state[types.MESSAGE_STATE_QUEUED] == 7
    assert by_state[types.MESSAGE_STATE_BLOCKED] == 1
    assert (status.total_count, status.final_count) == (8, 1)

    seen, token = [], ""
    while True:
        page = await grpc_api.dispatch.ListRunMessages(
            pb.ListRunMessagesRequest(run_id=run.run_id, page_size=3, page_token=token),
            metadata=grpc_api.md(str(world.viewer)),
        )
        seen += [m.phone_e164 for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert seen == [*PHONES, ""]
    blocked = await grpc_api.dispatch.ListRunMessages(
        pb.ListRunMessagesRequest(run_id=run.run_id, states=[types.MESSAGE_STATE_BLOCKED]),
        metadata=grpc_api.md(str(world.viewer)),
    )
    assert [(m.state, m.reason) for m in blocked.messages] == [
        (types.MESSAGE_STATE_BLOCKED, types.REJECTION_REASON_NO_PHONE)
    ]


async def test_error_codes_for_bad_input_roles_and_other_workspaces(
    database_url: str, grpc_api: ApiClient
) -> None:
    world, other = seed_world(database_url, PHONES[:2]), seed_world(database_url, PHONES[:1])
    md = grpc_api.md
    d = grpc_api.dispatch
    bad = pb.PrecheckSendRequest(event_id="nope", template_id=str(world.template_id))
    assert await failure(d.PrecheckSend(bad, metadata=md(str(world.admin)))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    theirs = pb.PrecheckSendRequest(
        event_id=str(other.event_id), template_id=str(world.template_id)
    )
    assert await failure(d.PrecheckSend(theirs, metadata=md(str(world.admin)))) == (
        grpc.StatusCode.NOT_FOUND
    )
    mine = pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id))
    assert await failure(d.PrecheckSend(mine, metadata=md(str(world.viewer)))) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await failure(d.PrecheckSend(mine, metadata=md())) == grpc.StatusCode.UNAUTHENTICATED

    precheck_id = await precheck(grpc_api, world)
    as_admin = d.StartRun(
        pb.StartRunRequest(precheck_id=precheck_id, idempotency_key="k"),
        metadata=md(str(world.admin)),
    )
    assert await failure(as_admin) == grpc.StatusCode.PERMISSION_DENIED
    no_key = d.StartRun(
        pb.StartRunRequest(precheck_id=precheck_id), metadata=md(str(world.parent_admin))
    )
    assert await failure(no_key) == grpc.StatusCode.INVALID_ARGUMENT
    their_precheck = await precheck(grpc_api, other)
    foreign = d.StartRun(
        pb.StartRunRequest(precheck_id=their_precheck, idempotency_key="k"),
        metadata=md(str(world.parent_admin)),
    )
    assert await failure(foreign) == grpc.StatusCode.NOT_FOUND

    run = await start(grpc_api, world, precheck_id, "k")
    again = await grpc_api.dispatch.StartRun(
        pb.StartRunRequest(precheck_id=precheck_id, idempotency_key="k"),
        metadata=md(str(world.parent_admin)),
    )
    assert (again.run.run_id, again.created) == (run.run_id, False)
    reused = d.StartRun(
        pb.StartRunRequest(precheck_id=await precheck(grpc_api, world), idempotency_key="k"),
        metadata=md(str(world.parent_admin)),
    )
    assert await failure(reused) == grpc.StatusCode.ALREADY_EXISTS

    with Seeder(database_url) as seed:
        seed.conn.execute("UPDATE precheck SET expires_at = now() - interval '1 minute'")
    expired = d.StartRun(
        pb.StartRunRequest(precheck_id=their_precheck, idempotency_key="k2"),
        metadata=md(str(other.parent_admin)),
    )
    assert await failure(expired) == grpc.StatusCode.FAILED_PRECONDITION

    for call in (
        d.GetRunStatus(pb.GetRunStatusRequest(run_id=run.run_id), metadata=md(str(other.viewer))),
        d.ListRunMessages(
            pb.ListRunMessagesRequest(run_id=run.run_id), metadata=md(str(other.viewer))
        ),
        d.CancelRun(pb.CancelRunRequest(run_id=run.run_id), metadata=md(str(other.parent_admin))),
        d.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id), metadata=md(str(other.parent_admin))),
        d.GetEventInvitations(
            pb.GetEventInvitationsRequest(event_id=str(world.event_id)),
            metadata=md(str(other.viewer)),
        ),
    ):
        assert await failure(call) == grpc.StatusCode.NOT_FOUND
    stranger = d.GetRunStatus(
        pb.GetRunStatusRequest(run_id=run.run_id), metadata=md(str(uuid.uuid4()))
    )
    assert await failure(stranger) == grpc.StatusCode.UNAUTHENTICATED
    bad_token = d.ListRunMessages(
        pb.ListRunMessagesRequest(run_id=run.run_id, page_token="%%%"),
        metadata=md(str(world.viewer)),
    )
    assert await failure(bad_token) == grpc.StatusCode.INVALID_ARGUMENT
    resume = d.ResumeRun(
        pb.ResumeRunRequest(run_id=run.run_id), metadata=md(str(world.parent_admin))
    )
    assert await failure(resume) == grpc.StatusCode.FAILED_PRECONDITION
    cancel = d.CancelRun(pb.CancelRunRequest(run_id=run.run_id), metadata=md(str(world.admin)))
    assert await failure(cancel) == grpc.StatusCode.PERMISSION_DENIED


async def test_watch_streams_changes_until_the_run_is_final(
    database_url: str, grpc_api: ApiClient
) -> None:
    world = seed_world(database_url, PHONES[:3])
    run = await start(grpc_api, world, await precheck(grpc_api, world))
    stream = grpc_api.dispatch.WatchRun(
        pb.WatchRunRequest(run_id=run.run_id), metadata=grpc_api.md(str(world.viewer))
    )
    updates: list[pb.RunStatus] = []

    async def read() -> None:
        async for update in stream:
            updates.append(update.status)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    with Seeder(database_url) as seed:
        seed.conn.execute(
            "UPDATE invite_message SET state = 'sent' WHERE phone_e164 = %s", (PHONES[0],)
        )
    await asyncio.sleep(0.8)
    await grpc_api.dispatch.CancelRun(
        pb.CancelRunRequest(run_id=run.run_id), metadata=grpc_api.md(str(world.parent_admin))
    )
    await asyncio.wait_for(reader, 5)
    states = [u.run.state for u in updates]
    assert states[0] == types.RUN_STATE_QUEUED
    assert states[-1] == types.RUN_STATE_CANCELLED
    sent = [{c.state: c.count for c in u.by_state}[types.MESSAGE_STATE_SENT] for u in updates]
    assert sent[0] == 0
    assert 1 in sent
    assert len(updates) == len({u.SerializeToString() for u in updates})  # only changes


async def test_event_invitations_show_each_households_latest_invitation(
    database_url: str, grpc_api: ApiClient
) -> None:
    world = seed_world(database_url, PHONES[:3])
    first = await start(grpc_api, world, await precheck(grpc_api, world), "k1")
    with Seeder(database_url) as seed:
        seed.conn.execute(
            "UPDATE invite_message SET state = 'failed', rejection_reason = 'provider_rejected',"
            " error_code = 131026 WHERE phone_e164 = %s",
            (PHONES[0],),
        )
        seed.conn.execute(
            "UPDATE invite_message SET state = 'read' WHERE phone_e164 <> %s", (PHONES[0],)
        )
    second = await start(grpc_api, world, await precheck(grpc_api, world), "k2")
    reply = await grpc_api.dispatch.GetEventInvitations(
        pb.GetEventInvitationsRequest(event_id=str(world.event_id), page_size=2),
        metadata=grpc_api.md(str(world.viewer)),
    )
    assert [r.run_id for r in reply.runs] == [second.run_id, first.run_id]
    rest = await grpc_api.dispatch.GetEventInvitations(
        pb.GetEventInvitationsRequest(
            event_id=str(world.event_id), page_size=2, page_token=reply.next_page_token
        ),
        metadata=grpc_api.md(str(world.viewer)),
    )
    assert not rest.next_page_token
    latest = {
        r.phone_e164: (r.run_id, r.latest.state) for r in [*reply.recipients, *rest.recipients]
    }
    assert latest == {
        PHONES[0]: (second.run_id, types.MESSAGE_STATE_QUEUED),  # invited again after failing
        PHONES[1]: (first.run_id, types.MESSAGE_STATE_READ),  # not the blocked re-invite
        PHONES[2]: (first.run_id, types.MESSAGE_STATE_READ),
    }
