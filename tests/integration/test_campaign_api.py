"""Campaign control through the real gRPC server: StartRun's send_at/deadline/send_window,
CancelRun of a scheduled run, ResendRun, ConfigureSending and PrecheckSend's limit fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.conftest import ApiClient, code_of
from tests.integration.dispatch_support import seed_world

PHONES = [f"+1415555{n:04d}" for n in range(3)]


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


async def test_a_scheduled_run_through_the_api_and_its_cancel(
    database_url: str, grpc_api: ApiClient
) -> None:
    world = seed_world(database_url, PHONES)
    api, parent = grpc_api.dispatch, grpc_api.md(str(world.parent_admin))
    precheck = await api.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=grpc_api.md(str(world.admin)),
    )
    assert (precheck.messaging_limit, precheck.sendable_now) == (0, 3)
    assert not precheck.HasField("limit_frees_at")
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    started = await api.StartRun(
        pb.StartRunRequest(
            precheck_id=precheck.precheck_id,
            idempotency_key="k",
            send_at=stamp(send_at),
            deadline=stamp(send_at + timedelta(hours=5)),
            send_window="08:30-20:00",
        ),
        metadata=parent,
    )
    run = started.run
    assert run.state == types.RUN_STATE_SCHEDULED
    assert run.send_at.ToDatetime(tzinfo=UTC) == send_at
    assert run.deadline.ToDatetime(tzinfo=UTC) == send_at + timedelta(hours=5)
    assert run.send_window == "08:30-20:00"
    cancelled = await api.CancelRun(pb.CancelRunRequest(run_id=run.run_id), metadata=parent)
    assert cancelled.run.state == types.RUN_STATE_CANCELLED

    with pytest.raises(aio.AioRpcError) as caught:
        await api.StartRun(
            pb.StartRunRequest(
                precheck_id=precheck.precheck_id, idempotency_key="k2", send_window="late"
            ),
            metadata=parent,
        )
    assert code_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT


async def test_resend_and_configure_sending_through_the_api(
    database_url: str, grpc_api: ApiClient
) -> None:
    world = seed_world(database_url, PHONES)
    api, parent = grpc_api.dispatch, grpc_api.md(str(world.parent_admin))
    precheck = await api.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=grpc_api.md(str(world.admin)),
    )
    run = (
        await api.StartRun(
            pb.StartRunRequest(precheck_id=precheck.precheck_id, idempotency_key="k"),
            metadata=parent,
        )
    ).run
    # Nothing failed yet: a resend selects nobody and creates no run.
    reply = await api.ResendRun(
        pb.ResendRunRequest(
            run_id=run.run_id, selection=pb.ResendSelection(failed=True), idempotency_key="r"
        ),
        metadata=parent,
    )
    assert (reply.precheck.total_count, reply.HasField("run"), reply.created) == (0, False, False)
    with pytest.raises(aio.AioRpcError) as caught:
        await api.ResendRun(
            pb.ResendRunRequest(run_id=run.run_id, idempotency_key="r"), metadata=parent
        )
    assert code_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT

    configured = await api.ConfigureSending(
        pb.ConfigureSendingRequest(messaging_limit="250", send_window="09:00-21:00"),
        metadata=parent,
    )
    assert (configured.messaging_limit, configured.send_window) == (250, "09:00-21:00")
    with pytest.raises(aio.AioRpcError) as caught:
        await api.ConfigureSending(
            pb.ConfigureSendingRequest(messaging_limit="unlimited"),
            metadata=grpc_api.md(str(world.viewer)),
        )
    assert code_of(caught.value) == grpc.StatusCode.PERMISSION_DENIED
    again = await api.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=grpc_api.md(str(world.admin)),
    )
    assert (again.messaging_limit, again.eligible_count, again.sendable_now) == (250, 0, 0)
