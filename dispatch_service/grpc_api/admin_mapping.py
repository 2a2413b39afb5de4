"""AdminService mapping: proto requests to use-case arguments, results back to proto messages.

Proto enums carry the vocabulary's values with a prefix (`ROLE_PARENT_ADMIN` <->
`Role.PARENT_ADMIN`); `*_UNSPECIFIED` (and numbers no enum value has) map to None.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2
from common.vocabulary import (
    AudienceMode,
    DnmSource,
    ImportRowOutcome,
    ImportSource,
    Role,
    SenderProvider,
    TemplateCategory,
    TemplateParameterFormat,
    TemplateSource,
    TemplateStatus,
)
from dispatch_service.domain.audience import AudienceDefinition, build_audience
from dispatch_service.domain.guests import GuestInput
from dispatch_service.domain.ids import parse_uuids
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.read_models import (
    DoNotMessageEntryView,
    EventView,
    GuestUnitView,
    ImportRowView,
    ImportRunView,
    MemberView,
    TemplateView,
    WorkspaceView,
)
from dispatch_service.use_cases.events import EventChanges, EventPlace
from dispatch_service.use_cases.guests import ImportRequest, csv_import_request, guest_row
from dispatch_service.use_cases.templates import SyncReport, TemplateChangeKind

V = TypeVar("V", bound=StrEnum)

PREFIXES: dict[type[StrEnum], tuple[Any, str]] = {
    Role: (types_pb2.Role, "ROLE_"),
    TemplateCategory: (types_pb2.TemplateCategory, "TEMPLATE_CATEGORY_"),
    TemplateStatus: (types_pb2.TemplateStatus, "TEMPLATE_STATUS_"),
    DnmSource: (types_pb2.DnmSource, "DNM_SOURCE_"),
    AudienceMode: (pb.AudienceMode, "AUDIENCE_MODE_"),
    ImportSource: (pb.ImportSource, "IMPORT_SOURCE_"),
    ImportRowOutcome: (pb.ImportRowOutcome, "IMPORT_ROW_OUTCOME_"),
    SenderProvider: (pb.SenderProvider, "SENDER_PROVIDER_"),
    TemplateSource: (pb.TemplateSource, "TEMPLATE_SOURCE_"),
    TemplateParameterFormat: (pb.TemplateParameterFormat, "TEMPLATE_PARAMETER_FORMAT_"),
    TemplateChangeKind: (pb.TemplateSyncKind, "TEMPLATE_SYNC_KIND_"),
}


# --- primitives --------------------------------------------------------------------------------


def from_proto_enum(vocabulary: type[V], number: int, field: str) -> V | None:
    """The vocabulary value of a proto enum number; None when unspecified."""
    enum, prefix = PREFIXES[vocabulary]
    if number == 0:
        return None
    try:
        name: str = enum.Name(number)
    except ValueError:
        raise InvalidArgument(FieldViolation(field, f"unknown value {number}")) from None
    by_name = {prefix + v.value.upper(): v for v in vocabulary}
    return by_name[name]


def to_proto_enum(value: StrEnum | str, vocabulary: type[StrEnum]) -> Any:
    """The proto enum number of a vocabulary value (as stored in the database).

    Typed Any: each proto enum field has its own ValueType; the number is what they take.
    """
    enum, prefix = PREFIXES[vocabulary]
    return enum.Value(prefix + str(value).upper())


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp (None stays unset)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def request_time(message: Any, field: str) -> datetime | None:
    """A timestamp field of a request as an aware UTC datetime; None when unset."""
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


# --- workspaces and members --------------------------------------------------------------------


def workspace_pb(workspace: WorkspaceView) -> pb.Workspace:
    """A workspace message."""
    return pb.Workspace(
        workspace_id=str(workspace.id),
        name=workspace.name,
        default_region=workspace.default_region,
        sender_phone_number_id=workspace.sender_phone_number_id,
        sender_provider=to_proto_enum(workspace.sender_provider, SenderProvider),
        twilio_account_sid=workspace.twilio_account_sid or "",
        waba_id=workspace.waba_id or "",
    )


def member_pb(member: MemberView) -> pb.Member:
    """A member message."""
    return pb.Member(
        member_id=str(member.id),
        workspace_id=str(member.workspace_id),
        display_name=member.display_name,
        role=to_proto_enum(member.role, Role),
    )


# --- events and audiences ----------------------------------------------------------------------


def event_pb(event: EventView) -> pb.Event:
    """An event message."""
    return pb.Event(
        event_id=str(event.id),
        name=event.name,
        starts_at=timestamp(event.starts_at),
        location=event.location,
        time_zone=event.time_zone,
        address=event.address,
        latitude=event.latitude,
        longitude=event.longitude,
    )


def event_changes(event: pb.Event) -> EventChanges:
    """UpdateEvent's changes: empty fields are kept."""
    return EventChanges(
        name=event.name or None,
        starts_at=request_time(event, "starts_at"),
        location=event.location or None,
        time_zone=event.time_zone or None,
        address=event.address or None,
        coordinates=coordinates(event),
    )


def coordinates(message: pb.Event | pb.CreateEventRequest) -> tuple[float, float] | None:
    """(latitude, longitude) when both are set; InvalidArgument when only one is."""
    has = (message.HasField("latitude"), message.HasField("longitude"))
    if has == (False, False):
        return None
    if has != (True, True):
        raise InvalidArgument(FieldViolation("latitude", "latitude and longitude go together"))
    return (message.latitude, message.longitude)


def event_place(request: pb.CreateEventRequest) -> EventPlace:
    """CreateEvent's optional where and when."""
    return EventPlace(request.time_zone, request.address, coordinates(request))


def audience_from_pb(audience: pb.Audience) -> AudienceDefinition:
    """A validated audience definition from its message."""
    return build_audience(
        from_proto_enum(AudienceMode, audience.mode, "audience.mode"),
        tags=audience.tags,
        sides=audience.sides,
        guest_unit_ids=parse_uuids(audience.guest_unit_ids, "audience.guest_unit_ids"),
        include_guest_unit_ids=parse_uuids(
            audience.include_guest_unit_ids, "audience.include_guest_unit_ids"
        ),
        exclude_guest_unit_ids=parse_uuids(
            audience.exclude_guest_unit_ids, "audience.exclude_guest_unit_ids"
        ),
    )


def audience_pb(audience: AudienceDefinition | None) -> pb.Audience:
    """An audience message (mode UNSPECIFIED when none is set)."""
    if audience is None:
        return pb.Audience()
    return pb.Audience(
        mode=to_proto_enum(audience.mode, AudienceMode),
        tags=audience.tags,
        sides=audience.sides,
        guest_unit_ids=[str(i) for i in audience.guest_unit_ids],
        include_guest_unit_ids=[str(i) for i in audience.include_guest_unit_ids],
        exclude_guest_unit_ids=[str(i) for i in audience.exclude_guest_unit_ids],
    )


# --- templates ---------------------------------------------------------------------------------


def template_pb(template: TemplateView) -> pb.Template:
    """A template message."""
    return pb.Template(
        template_id=str(template.id),
        name=template.name,
        language=template.language,
        category=to_proto_enum(template.category, TemplateCategory),
        variables=list(template.variables),
        status=to_proto_enum(template.status, TemplateStatus),
        twilio_content_sid=template.twilio_content_sid or "",
        source=to_proto_enum(template.source, TemplateSource),
        meta_template_id=template.meta_template_id or "",
        quality=template.quality or "",
        parameter_format=to_proto_enum(template.parameter_format, TemplateParameterFormat),
        components=[component_pb(c) for c in template.components],
        deleted_on_meta=template.deleted_on_meta_at is not None,
        previous_category=(
            to_proto_enum(template.previous_category, TemplateCategory)
            if template.previous_category
            else types_pb2.TEMPLATE_CATEGORY_UNSPECIFIED
        ),
        status_reason=template.status_reason or "",
        synced_at=timestamp(template.synced_at),
    )


def component_pb(component: Mapping[str, Any]) -> pb.TemplateComponent:
    """One template component as Meta describes it."""
    example = component.get("example")
    buttons = component.get("buttons") or []
    return pb.TemplateComponent(
        type=str(component.get("type", "")),
        format=str(component.get("format", "")),
        text=str(component.get("text", "")),
        buttons=[
            pb.TemplateButton(
                type=str(b.get("type", "")),
                text=str(b.get("text", "")),
                url=str(b.get("url", "")),
                phone_number=str(b.get("phone_number", "")),
            )
            for b in buttons
            if isinstance(b, Mapping)
        ],
        example_json=json.dumps(example, sort_keys=True) if example is not None else "",
    )


def sync_report_pb(report: SyncReport) -> pb.SyncTemplatesResponse:
    """A SyncTemplates report."""
    return pb.SyncTemplatesResponse(
        waba_id=report.waba_id,
        read=report.read,
        changes=[
            pb.TemplateSyncChange(
                template=template_pb(change.template),
                kind=to_proto_enum(change.kind, TemplateChangeKind),
                fields=list(change.fields),
                active_run_ids=[str(r) for r in change.runs_in_use],
            )
            for change in report.changes
        ],
        skipped=list(report.skipped),
        paused_run_ids=[str(r) for r in report.paused_runs],
        messaging_limit=""
        if report.messaging_limit is None
        else str(report.messaging_limit[0] or "unlimited"),
    )


# --- guests ------------------------------------------------------------------------------------


def import_request(first: pb.ImportGuestsRequest | None) -> ImportRequest:
    """The validated header, which must be the stream's first message."""
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument(
            FieldViolation("header", "the first message must be the header, then the chunks")
        )
    header = first.header
    return csv_import_request(
        header.idempotency_key,
        from_proto_enum(ImportSource, header.source, "header.source"),
        header.file_name,
    )


async def csv_chunks(stream: AsyncIterator[pb.ImportGuestsRequest]) -> AsyncIterator[bytes]:
    """The CSV bytes of the rest of the stream (a second header is an error)."""
    async for message in stream:
        if message.WhichOneof("part") == "header":
            raise InvalidArgument(FieldViolation("header", "only the first message is a header"))
        yield message.chunk


def guest_input(row_number: int, row: pb.GuestRow) -> GuestInput:
    """An UpsertGuests row as an import input (row numbers start at 1)."""
    return guest_row(
        row_number,
        household=row.household,
        name=row.name,
        phone=row.phone,
        tags=list(row.tags),
        side=row.side,
        is_contact=row.is_contact,
        language=row.language,
    )


def import_run_pb(run: ImportRunView) -> pb.ImportRun:
    """An import run message with its counters."""
    return pb.ImportRun(
        import_run_id=str(run.id),
        source=to_proto_enum(run.source, ImportSource),
        idempotency_key=run.idempotency_key,
        total_rows=run.total_rows,
        created=run.created,
        updated=run.updated,
        reactivated=run.reactivated,
        warning_malformed_phone=run.warning_malformed_phone,
        skipped_no_phone=run.skipped_no_phone,
        finished_at=timestamp(run.finished_at),
    )


def outcomes_from_pb(values: Any) -> list[ImportRowOutcome]:
    """The outcome filter of ListImportRows (unspecified values are refused)."""
    outcomes = []
    for index, number in enumerate(values):
        outcome = from_proto_enum(ImportRowOutcome, number, f"outcomes[{index}]")
        if outcome is None:
            raise InvalidArgument(FieldViolation(f"outcomes[{index}]", "must be specified"))
        outcomes.append(outcome)
    return outcomes


def import_row_pb(row: ImportRowView) -> pb.ImportRowResult:
    """One import row's outcome."""
    return pb.ImportRowResult(
        row_number=row.row_number,
        outcome=to_proto_enum(row.outcome, ImportRowOutcome),
        phone_e164=row.phone_e164 or "",
        message=row.message,
        person_id=str(row.person_id) if row.person_id else "",
    )


def guest_unit_pb(unit: GuestUnitView) -> pb.GuestUnit:
    """A household message."""
    return pb.GuestUnit(
        guest_unit_id=str(unit.id),
        name=unit.name,
        contact_person_id=str(unit.contact_person_id) if unit.contact_person_id else "",
        contact_phone_e164=unit.contact_phone_e164 or "",
        tags=unit.tags,
        side=unit.side or "",
        member_count=unit.member_count,
        active=unit.active,
        preferred_language=unit.preferred_language or "",
    )


# --- do-not-message ----------------------------------------------------------------------------


def dnm_entry_pb(entry: DoNotMessageEntryView) -> pb.DoNotMessageEntry:
    """A do-not-message entry message."""
    return pb.DoNotMessageEntry(
        entry_id=str(entry.id),
        phone_e164=entry.phone_e164 or "",
        reason=entry.reason,
        source=to_proto_enum(entry.source, DnmSource),
        actor_id=str(entry.actor_id) if entry.actor_id else "",
        created_at=timestamp(entry.created_at),
        removed_at=timestamp(entry.removed_at) if entry.removed_at else None,
        removed_by=str(entry.removed_by) if entry.removed_by else "",
        removal_reason=entry.removal_reason or "",
    )
