"""AdminService: transport only (proto to command, use case, result to proto).

Mapping lives in admin_mapping; errors are raised, and the guard interceptor turns them into
statuses. Every call except CreateWorkspace acts as the `x-actor-id` membership, whose workspace
and role the use cases read from the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import admin_pb2_grpc as pb_grpc
from common.vocabulary import ImportSource, Role, SenderProvider, TemplateCategory, TemplateStatus
from dispatch_service.bootstrap import Deps
from dispatch_service.domain.ids import parse_uuid
from dispatch_service.domain.pricing import RateCard
from dispatch_service.grpc_api import admin_mapping as m
from dispatch_service.grpc_api.actor import actor_id
from dispatch_service.grpc_api.dispatch_mapping import timestamp
from dispatch_service.read_models import EndpointState
from dispatch_service.use_cases import (
    callbacks,
    console_keys,
    do_not_message,
    events,
    guests,
    rate_cards,
    templates,
    workspaces,
)

Context = aio.ServicerContext[Any, Any]


class AdminServiceServicer(pb_grpc.AdminServiceServicer):
    """invites.v1.AdminService."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.sessions = deps.sessions

    # --- workspaces and members ----------------------------------------------------------------

    async def CreateWorkspace(
        self, request: pb.CreateWorkspaceRequest, context: Context
    ) -> pb.CreateWorkspaceResponse:
        command = workspaces.new_workspace(
            name=request.name,
            default_region=request.default_region,
            sender_phone_number_id=request.sender_phone_number_id,
            admin_display_name=request.admin_display_name,
            default_sender_phone_number_id=self.deps.settings.whatsapp_phone_number_id,
            sender_provider=m.from_proto_enum(
                SenderProvider, request.sender_provider, "sender_provider"
            ),
            twilio_account_sid=request.twilio_account_sid,
            waba_id=request.waba_id,
            default_waba_id=self.deps.settings.whatsapp_waba_id,
        )
        workspace, admin = await workspaces.create_workspace(self.sessions, command)
        return pb.CreateWorkspaceResponse(
            workspace=m.workspace_pb(workspace), admin=m.member_pb(admin)
        )

    async def AddMember(
        self, request: pb.AddMemberRequest, context: Context
    ) -> pb.AddMemberResponse:
        role = m.from_proto_enum(Role, request.role, "role")
        member = await workspaces.add_member(
            self.sessions, actor_id(context), request.display_name, role
        )
        return pb.AddMemberResponse(member=m.member_pb(member))

    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, context: Context
    ) -> pb.RemoveMemberResponse:
        member_id = parse_uuid(request.member_id, "member_id")
        await workspaces.remove_member(self.sessions, actor_id(context), member_id)
        return pb.RemoveMemberResponse()

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: Context
    ) -> pb.ListMembersResponse:
        members = await workspaces.list_members(self.sessions, actor_id(context))
        return pb.ListMembersResponse(members=[m.member_pb(x) for x in members])

    # --- events and audiences ------------------------------------------------------------------

    async def CreateEvent(
        self, request: pb.CreateEventRequest, context: Context
    ) -> pb.CreateEventResponse:
        event = await events.create_event(
            self.sessions,
            actor_id(context),
            name=request.name,
            starts_at=m.request_time(request, "starts_at"),
            location=request.location,
            place=m.event_place(request),
        )
        return pb.CreateEventResponse(event=m.event_pb(event))

    async def UpdateEvent(
        self, request: pb.UpdateEventRequest, context: Context
    ) -> pb.UpdateEventResponse:
        event_id = parse_uuid(request.event.event_id, "event.event_id")
        event = await events.update_event(
            self.sessions, actor_id(context), event_id, m.event_changes(request.event)
        )
        return pb.UpdateEventResponse(event=m.event_pb(event))

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        listed = await events.list_workspace_events(self.sessions, actor_id(context))
        return pb.ListEventsResponse(events=[m.event_pb(e) for e in listed])

    async def SetEventAudience(
        self, request: pb.SetEventAudienceRequest, context: Context
    ) -> pb.SetEventAudienceResponse:
        event_id = parse_uuid(request.event_id, "event_id")
        audience, count = await events.set_event_audience(
            self.sessions, actor_id(context), event_id, m.audience_from_pb(request.audience)
        )
        return pb.SetEventAudienceResponse(
            audience=m.audience_pb(audience), resolved_guest_unit_count=count
        )

    async def GetEventAudience(
        self, request: pb.GetEventAudienceRequest, context: Context
    ) -> pb.GetEventAudienceResponse:
        event_id = parse_uuid(request.event_id, "event_id")
        audience, count = await events.get_event_audience(
            self.sessions, actor_id(context), event_id
        )
        return pb.GetEventAudienceResponse(
            audience=m.audience_pb(audience), resolved_guest_unit_count=count
        )

    # --- templates -----------------------------------------------------------------------------

    async def RegisterTemplate(
        self, request: pb.RegisterTemplateRequest, context: Context
    ) -> pb.RegisterTemplateResponse:
        given = request.template
        command = templates.new_template(
            name=given.name,
            language=given.language,
            category=m.from_proto_enum(TemplateCategory, given.category, "template.category"),
            variables=tuple(given.variables),
            status=m.from_proto_enum(TemplateStatus, given.status, "template.status"),
            twilio_content_sid=given.twilio_content_sid,
        )
        template = await templates.register_template(self.sessions, actor_id(context), command)
        return pb.RegisterTemplateResponse(template=m.template_pb(template))

    async def UpdateTemplateStatus(
        self, request: pb.UpdateTemplateStatusRequest, context: Context
    ) -> pb.UpdateTemplateStatusResponse:
        template_id = parse_uuid(request.template_id, "template_id")
        status = m.from_proto_enum(TemplateStatus, request.status, "status")
        template = await templates.update_template_status(
            self.sessions, actor_id(context), template_id, status
        )
        return pb.UpdateTemplateStatusResponse(template=m.template_pb(template))

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: Context
    ) -> pb.ListTemplatesResponse:
        listed = await templates.list_workspace_templates(self.sessions, actor_id(context))
        return pb.ListTemplatesResponse(templates=[m.template_pb(t) for t in listed])

    async def SyncTemplates(
        self, request: pb.SyncTemplatesRequest, context: Context
    ) -> pb.SyncTemplatesResponse:
        report = await templates.sync_templates(
            self.sessions, actor_id(context), self.deps.template_catalog, request.waba_id
        )
        return m.sync_report_pb(report)

    # --- guests --------------------------------------------------------------------------------

    async def ImportGuests(
        self, requests: AsyncIterator[pb.ImportGuestsRequest], context: Context
    ) -> pb.ImportGuestsResponse:
        actor = actor_id(context)
        stream = aiter(requests)
        header = m.import_request(await anext(stream, None))
        result = await guests.import_guests_csv(
            self.sessions, actor, header, m.csv_chunks(stream), self.deps.settings.import_max_bytes
        )
        return pb.ImportGuestsResponse(
            import_run=m.import_run_pb(result.run), created=result.created
        )

    async def UpsertGuests(
        self, request: pb.UpsertGuestsRequest, context: Context
    ) -> pb.UpsertGuestsResponse:
        rows = [m.guest_input(number, row) for number, row in enumerate(request.rows, start=1)]
        command = guests.rows_import_request(
            request.idempotency_key, m.from_proto_enum(ImportSource, request.source, "source"), rows
        )
        result = await guests.upsert_guests(self.sessions, actor_id(context), command, rows)
        return pb.UpsertGuestsResponse(
            import_run=m.import_run_pb(result.run), created=result.created
        )

    async def ListImportRuns(
        self, request: pb.ListImportRunsRequest, context: Context
    ) -> pb.ListImportRunsResponse:
        runs, token = await guests.list_import_runs(
            self.sessions, actor_id(context), request.page_size, request.page_token
        )
        return pb.ListImportRunsResponse(
            import_runs=[m.import_run_pb(r) for r in runs], next_page_token=token
        )

    async def ListImportRows(
        self, request: pb.ListImportRowsRequest, context: Context
    ) -> pb.ListImportRowsResponse:
        run_id = parse_uuid(request.import_run_id, "import_run_id")
        run, rows, token = await guests.list_run_rows(
            self.sessions,
            actor_id(context),
            run_id,
            m.outcomes_from_pb(request.outcomes),
            request.page_size,
            request.page_token,
        )
        return pb.ListImportRowsResponse(
            import_run=m.import_run_pb(run),
            rows=[m.import_row_pb(r) for r in rows],
            next_page_token=token,
        )

    async def ListGuestUnits(
        self, request: pb.ListGuestUnitsRequest, context: Context
    ) -> pb.ListGuestUnitsResponse:
        units, token = await guests.list_households(
            self.sessions, actor_id(context), request.page_size, request.page_token
        )
        return pb.ListGuestUnitsResponse(
            guest_units=[m.guest_unit_pb(u) for u in units], next_page_token=token
        )

    # --- do-not-message ------------------------------------------------------------------------

    async def AddDoNotMessage(
        self, request: pb.AddDoNotMessageRequest, context: Context
    ) -> pb.AddDoNotMessageResponse:
        entry, created = await do_not_message.add_do_not_message(
            self.sessions, actor_id(context), request.phone, request.reason
        )
        return pb.AddDoNotMessageResponse(entry=m.dnm_entry_pb(entry), created=created)

    async def RemoveDoNotMessage(
        self, request: pb.RemoveDoNotMessageRequest, context: Context
    ) -> pb.RemoveDoNotMessageResponse:
        entry = await do_not_message.remove_do_not_message(
            self.sessions, actor_id(context), request.phone, request.reason
        )
        return pb.RemoveDoNotMessageResponse(entry=m.dnm_entry_pb(entry))

    async def ListDoNotMessage(
        self, request: pb.ListDoNotMessageRequest, context: Context
    ) -> pb.ListDoNotMessageResponse:
        entries, token = await do_not_message.list_do_not_message(
            self.sessions,
            actor_id(context),
            request.page_size,
            request.page_token,
            include_removed=request.include_removed,
        )
        return pb.ListDoNotMessageResponse(
            entries=[m.dnm_entry_pb(e) for e in entries], next_page_token=token
        )

    # --- console keys --------------------------------------------------------------------------

    async def IssueConsoleKey(
        self, request: pb.IssueConsoleKeyRequest, context: Context
    ) -> pb.IssueConsoleKeyResponse:
        key, member = await console_keys.issue_console_key(self.sessions, actor_id(context))
        return pb.IssueConsoleKeyResponse(console_key=key, member=m.member_pb(member))

    async def ResolveConsoleKey(
        self, request: pb.ResolveConsoleKeyRequest, context: Context
    ) -> pb.ResolveConsoleKeyResponse:
        member, workspace = await console_keys.resolve_console_key(
            self.sessions, request.console_key
        )
        return pb.ResolveConsoleKeyResponse(
            member=m.member_pb(member), workspace=m.workspace_pb(workspace)
        )

    # --- rate card -----------------------------------------------------------------------------

    async def SetRateCard(
        self, request: pb.SetRateCardRequest, context: Context
    ) -> pb.SetRateCardResponse:
        card = request.rate_card
        stored = await rate_cards.set_rate_card(
            self.sessions,
            actor_id(context),
            card.currency,
            [(r.country_code, r.category, r.price) for r in card.rates],
        )
        return pb.SetRateCardResponse(rate_card=_rate_card_pb(stored))

    async def GetRateCard(
        self, request: pb.GetRateCardRequest, context: Context
    ) -> pb.GetRateCardResponse:
        stored = await rate_cards.get_rate_card(self.sessions, actor_id(context))
        return pb.GetRateCardResponse(rate_card=_rate_card_pb(stored))

    # --- signed callbacks ----------------------------------------------------------------------

    async def SetCallbackEndpoint(
        self, request: pb.SetCallbackEndpointRequest, context: Context
    ) -> pb.SetCallbackEndpointResponse:
        state = await callbacks.set_callback_endpoint(
            self.sessions, actor_id(context), request.url, request.secret
        )
        return pb.SetCallbackEndpointResponse(endpoint=_endpoint_pb(state))

    async def GetCallbackEndpoint(
        self, request: pb.GetCallbackEndpointRequest, context: Context
    ) -> pb.GetCallbackEndpointResponse:
        state = await callbacks.get_callback_endpoint(self.sessions, actor_id(context))
        return pb.GetCallbackEndpointResponse(endpoint=_endpoint_pb(state))


def _rate_card_pb(card: RateCard) -> pb.RateCard:
    return pb.RateCard(
        currency=card.currency,
        rates=[
            pb.Rate(country_code=code, category=category, price=str(price))
            for (code, category), price in sorted(card.prices.items())
        ],
    )


def _endpoint_pb(state: EndpointState | None) -> pb.CallbackEndpoint | None:
    if state is None:
        return None
    return pb.CallbackEndpoint(
        url=state.url,
        cursor=str(state.cursor),
        attempts=state.attempts,
        failing_since=timestamp(state.failing_since),
        next_attempt_at=timestamp(state.next_attempt_at),
        last_status=state.last_status,
        delivered_count=state.delivered_count,
        dead_lettered_count=state.dead_lettered_count,
    )
