"""AdminService: transport only (proto to command, use case, result to proto).

Methods whose issue has not landed answer UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import admin_pb2_grpc as pb_grpc
from dispatch_service.bootstrap import Deps
from dispatch_service.grpc_api.unimplemented import unimplemented

Context = aio.ServicerContext[Any, Any]


class AdminServiceServicer(pb_grpc.AdminServiceServicer):
    """invites.v1.AdminService."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def CreateWorkspace(
        self, request: pb.CreateWorkspaceRequest, context: Context
    ) -> pb.CreateWorkspaceResponse:
        await unimplemented(context, "CreateWorkspace")

    async def AddMember(
        self, request: pb.AddMemberRequest, context: Context
    ) -> pb.AddMemberResponse:
        await unimplemented(context, "AddMember")

    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, context: Context
    ) -> pb.RemoveMemberResponse:
        await unimplemented(context, "RemoveMember")

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: Context
    ) -> pb.ListMembersResponse:
        await unimplemented(context, "ListMembers")

    async def CreateEvent(
        self, request: pb.CreateEventRequest, context: Context
    ) -> pb.CreateEventResponse:
        await unimplemented(context, "CreateEvent")

    async def UpdateEvent(
        self, request: pb.UpdateEventRequest, context: Context
    ) -> pb.UpdateEventResponse:
        await unimplemented(context, "UpdateEvent")

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        await unimplemented(context, "ListEvents")

    async def SetEventAudience(
        self, request: pb.SetEventAudienceRequest, context: Context
    ) -> pb.SetEventAudienceResponse:
        await unimplemented(context, "SetEventAudience")

    async def GetEventAudience(
        self, request: pb.GetEventAudienceRequest, context: Context
    ) -> pb.GetEventAudienceResponse:
        await unimplemented(context, "GetEventAudience")

    async def RegisterTemplate(
        self, request: pb.RegisterTemplateRequest, context: Context
    ) -> pb.RegisterTemplateResponse:
        await unimplemented(context, "RegisterTemplate")

    async def UpdateTemplateStatus(
        self, request: pb.UpdateTemplateStatusRequest, context: Context
    ) -> pb.UpdateTemplateStatusResponse:
        await unimplemented(context, "UpdateTemplateStatus")

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: Context
    ) -> pb.ListTemplatesResponse:
        await unimplemented(context, "ListTemplates")

    async def ImportGuests(
        self, requests: AsyncIterator[pb.ImportGuestsRequest], context: Context
    ) -> pb.ImportGuestsResponse:
        await unimplemented(context, "ImportGuests")

    async def UpsertGuests(
        self, request: pb.UpsertGuestsRequest, context: Context
    ) -> pb.UpsertGuestsResponse:
        await unimplemented(context, "UpsertGuests")

    async def ListImportRows(
        self, request: pb.ListImportRowsRequest, context: Context
    ) -> pb.ListImportRowsResponse:
        await unimplemented(context, "ListImportRows")

    async def ListGuestUnits(
        self, request: pb.ListGuestUnitsRequest, context: Context
    ) -> pb.ListGuestUnitsResponse:
        await unimplemented(context, "ListGuestUnits")

    async def AddDoNotMessage(
        self, request: pb.AddDoNotMessageRequest, context: Context
    ) -> pb.AddDoNotMessageResponse:
        await unimplemented(context, "AddDoNotMessage")

    async def RemoveDoNotMessage(
        self, request: pb.RemoveDoNotMessageRequest, context: Context
    ) -> pb.RemoveDoNotMessageResponse:
        await unimplemented(context, "RemoveDoNotMessage")

    async def ListDoNotMessage(
        self, request: pb.ListDoNotMessageRequest, context: Context
    ) -> pb.ListDoNotMessageResponse:
        await unimplemented(context, "ListDoNotMessage")
