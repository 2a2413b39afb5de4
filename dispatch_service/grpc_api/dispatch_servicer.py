"""DispatchService: transport only (proto to command, use case, result to proto).

Methods whose issue has not landed answer UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_service.bootstrap import Deps
from dispatch_service.grpc_api import status_mapping
from dispatch_service.grpc_api.unimplemented import unimplemented
from dispatch_service.use_cases.apply_status import apply_status

Context = aio.ServicerContext[Any, Any]


class DispatchServiceServicer(pb_grpc.DispatchServiceServicer):
    """invites.v1.DispatchService."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def PrecheckSend(
        self, request: pb.PrecheckSendRequest, context: Context
    ) -> pb.PrecheckSendResponse:
        await unimplemented(context, "PrecheckSend")

    async def StartRun(self, request: pb.StartRunRequest, context: Context) -> pb.StartRunResponse:
        await unimplemented(context, "StartRun")

    async def GetRunStatus(
        self, request: pb.GetRunStatusRequest, context: Context
    ) -> pb.GetRunStatusResponse:
        await unimplemented(context, "GetRunStatus")

    async def ListRunMessages(
        self, request: pb.ListRunMessagesRequest, context: Context
    ) -> pb.ListRunMessagesResponse:
        await unimplemented(context, "ListRunMessages")

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: Context
    ) -> pb.CancelRunResponse:
        await unimplemented(context, "CancelRun")

    async def ResumeRun(
        self, request: pb.ResumeRunRequest, context: Context
    ) -> pb.ResumeRunResponse:
        await unimplemented(context, "ResumeRun")

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb.WatchRunResponse]:
        await unimplemented(context, "WatchRun")
        yield pb.WatchRunResponse()

    async def GetEventInvitations(
        self, request: pb.GetEventInvitationsRequest, context: Context
    ) -> pb.GetEventInvitationsResponse:
        await unimplemented(context, "GetEventInvitations")

    async def ApplyStatus(
        self, request: pb.ApplyStatusRequest, context: Context
    ) -> pb.ApplyStatusResponse:
        command = status_mapping.to_command(request)
        result = await apply_status(command, self.deps.sessions)
        return status_mapping.to_response(result)
