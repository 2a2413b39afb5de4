"""DispatchService: transport only (proto to command, use case, result to proto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_service.bootstrap import Deps
from dispatch_service.domain.ids import parse_uuid
from dispatch_service.domain.resend import resend_selection
from dispatch_service.grpc_api import changes_mapping, status_mapping
from dispatch_service.grpc_api import dispatch_mapping as mapping
from dispatch_service.grpc_api.actor import actor_id
from dispatch_service.use_cases import changes, reads
from dispatch_service.use_cases.apply_status import apply_status
from dispatch_service.use_cases.exports import export_run_messages
from dispatch_service.use_cases.precheck import (
    list_precheck_recipients,
    precheck_command,
    precheck_send,
)
from dispatch_service.use_cases.resend import resend_command, resend_run
from dispatch_service.use_cases.runs import (
    cancel_run,
    resume_run,
    run_command,
    start_run,
    start_run_command,
)
from dispatch_service.use_cases.sending import configure_sending

Context = aio.ServicerContext[Any, Any]


class DispatchServiceServicer(pb_grpc.DispatchServiceServicer):
    """invites.v1.DispatchService."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def PrecheckSend(
        self, request: pb.PrecheckSendRequest, context: Context
    ) -> pb.PrecheckSendResponse:
        command = precheck_command(
            actor_id(context),
            request.event_id,
            request.template_id,
            request.page_size,
            list(request.resend_phones),
            request.fallback_language,
        )
        ttl = self.deps.settings.precheck_ttl_seconds
        fmt = self.deps.settings.whatsapp_parameter_format
        return mapping.precheck_response(await precheck_send(self.deps.sessions, command, ttl, fmt))

    async def ListPrecheckRecipients(
        self, request: pb.ListPrecheckRecipientsRequest, context: Context
    ) -> pb.ListPrecheckRecipientsResponse:
        rows, token = await list_precheck_recipients(
            self.deps.sessions,
            actor_id(context),
            parse_uuid(request.precheck_id, "precheck_id"),
            request.eligible if request.HasField("eligible") else None,
            request.page_size,
            request.page_token,
        )
        return pb.ListPrecheckRecipientsResponse(
            recipients=[mapping.candidate_recipient(r) for r in rows], next_page_token=token
        )

    async def StartRun(self, request: pb.StartRunRequest, context: Context) -> pb.StartRunResponse:
        command = start_run_command(
            actor_id(context),
            request.precheck_id,
            request.idempotency_key,
            send_at=mapping.optional_time(request, "send_at"),
            deadline=mapping.optional_time(request, "deadline"),
            send_window=request.send_window,
            header_media=mapping.header_media(request),
        )
        result = await start_run(self.deps.sessions, command, self.deps.creation)
        return pb.StartRunResponse(run=mapping.run_message(result.run), created=result.created)

    async def GetRunStatus(
        self, request: pb.GetRunStatusRequest, context: Context
    ) -> pb.GetRunStatusResponse:
        run_id = parse_uuid(request.run_id, "run_id")
        status = await reads.get_run_status(self.deps.sessions, actor_id(context), run_id)
        return pb.GetRunStatusResponse(status=mapping.run_status(status))

    async def ListRunMessages(
        self, request: pb.ListRunMessagesRequest, context: Context
    ) -> pb.ListRunMessagesResponse:
        page = await reads.list_run_messages(
            self.deps.sessions,
            actor_id(context),
            parse_uuid(request.run_id, "run_id"),
            states=mapping.states_from_proto(request.states, "states"),
            reasons=mapping.reasons_from_proto(request.reasons, "reasons"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return mapping.messages_response(page)

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: Context
    ) -> pb.CancelRunResponse:
        run = await cancel_run(self.deps.sessions, run_command(actor_id(context), request.run_id))
        return pb.CancelRunResponse(run=mapping.run_message(run))

    async def ResumeRun(
        self, request: pb.ResumeRunRequest, context: Context
    ) -> pb.ResumeRunResponse:
        run = await resume_run(self.deps.sessions, run_command(actor_id(context), request.run_id))
        return pb.ResumeRunResponse(run=mapping.run_message(run))

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb.WatchRunResponse]:
        run_id = parse_uuid(request.run_id, "run_id")
        async for status in reads.watch_run(self.deps.sessions, actor_id(context), run_id):
            yield pb.WatchRunResponse(status=mapping.run_status(status))

    async def GetEventInvitations(
        self, request: pb.GetEventInvitationsRequest, context: Context
    ) -> pb.GetEventInvitationsResponse:
        result = await reads.get_event_invitations(
            self.deps.sessions,
            actor_id(context),
            parse_uuid(request.event_id, "event_id"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return mapping.event_invitations_response(result)

    async def ApplyStatus(
        self, request: pb.ApplyStatusRequest, context: Context
    ) -> pb.ApplyStatusResponse:
        command = status_mapping.to_command(request)
        settings = self.deps.settings
        result = await apply_status(
            command,
            self.deps.sessions,
            settings.dispatch_marketing_limit_defer_seconds,
            settings.dispatch_max_attempts,
        )
        return status_mapping.to_response(result)

    async def ResendRun(
        self, request: pb.ResendRunRequest, context: Context
    ) -> pb.ResendRunResponse:
        chosen = request.selection
        selection = resend_selection(
            chosen.failed,
            tuple(chosen.error_codes),
            chosen.outcome_unknown,
            chosen.not_read_after_seconds,
            chosen.rejected,
        )
        command = resend_command(
            actor_id(context), request.run_id, selection, request.idempotency_key, request.dry_run
        )
        settings = self.deps.settings
        result = await resend_run(self.deps.sessions, command, settings.precheck_ttl_seconds)
        return pb.ResendRunResponse(
            precheck=mapping.precheck_response(result.precheck) if result.precheck else None,
            run=mapping.run_message(result.run) if result.run else None,
            created=result.created,
        )

    async def ConfigureSending(
        self, request: pb.ConfigureSendingRequest, context: Context
    ) -> pb.ConfigureSendingResponse:
        settings = await configure_sending(
            self.deps.sessions, actor_id(context), request.messaging_limit, request.send_window
        )
        return pb.ConfigureSendingResponse(
            messaging_limit=settings.messaging_limit or 0,
            send_window=settings.send_window or "",
            used_in_window=settings.window.used,
            frees_at=mapping.timestamp(settings.window.frees_at),
        )

    async def ListChanges(
        self, request: pb.ListChangesRequest, context: Context
    ) -> pb.ListChangesResponse:
        query = changes_mapping.change_query(actor_id(context), request)
        page = await changes.list_changes(self.deps.sessions, query, request.page_size)
        return changes_mapping.changes_response(page)

    async def WatchChanges(
        self, request: pb.WatchChangesRequest, context: Context
    ) -> AsyncIterator[pb.WatchChangesResponse]:
        query = changes_mapping.change_query(actor_id(context), request)
        async for change in changes.watch_changes(self.deps.sessions, query):
            yield pb.WatchChangesResponse(change=changes_mapping.change(change))

    async def ExportRunMessages(
        self, request: pb.ExportRunMessagesRequest, context: Context
    ) -> AsyncIterator[pb.ExportRunMessagesResponse]:
        run_id = parse_uuid(request.run_id, "run_id")
        async for rows in export_run_messages(self.deps.sessions, actor_id(context), run_id):
            yield pb.ExportRunMessagesResponse(messages=[changes_mapping.exported(r) for r in rows])
