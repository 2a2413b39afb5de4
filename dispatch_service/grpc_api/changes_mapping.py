"""Proto <-> use-case mapping of the change stream and the run export (no logic here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.vocabulary import MessageState, RejectionReason, RunState
from dispatch_service.domain.changes import ChangeKind
from dispatch_service.domain.ids import parse_uuid
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.grpc_api.dispatch_mapping import message_state, reason, run_state, timestamp
from dispatch_service.read_models import ChangeView, ExportRow
from dispatch_service.use_cases.changes import ChangePage, ChangeQuery

_KINDS = {pb.CHANGE_KIND_MESSAGE: ChangeKind.MESSAGE, pb.CHANGE_KIND_RUN: ChangeKind.RUN}
_PROTO_KINDS = {v: k for k, v in _KINDS.items()}


def kinds_from_proto(values: Iterable[int]) -> frozenset[ChangeKind]:
    """CHANGE_KIND_* -> ChangeKind (UNSPECIFIED alone means all)."""
    kinds = set()
    for value in values:
        if value == pb.CHANGE_KIND_UNSPECIFIED:
            continue
        if value not in _KINDS:
            raise InvalidArgument(FieldViolation("kinds", f"{value} is not a kind of change"))
        kinds.add(_KINDS[pb.ChangeKind.ValueType(value)])
    return frozenset(kinds)


def change_query(
    actor: uuid.UUID, request: pb.ListChangesRequest | pb.WatchChangesRequest
) -> ChangeQuery:
    """A List/WatchChanges request -> ChangeQuery."""
    return ChangeQuery(
        actor_id=actor,
        after_cursor=request.after_cursor,
        run_id=parse_uuid(request.run_id, "run_id") if request.run_id else None,
        event_id=parse_uuid(request.event_id, "event_id") if request.event_id else None,
        kinds=kinds_from_proto(request.kinds),
        from_now=isinstance(request, pb.WatchChangesRequest) and request.from_now,
    )


def change(view: ChangeView) -> pb.Change:
    """ChangeView -> Change."""
    result = pb.Change(
        cursor=str(view.position),
        kind=_PROTO_KINDS[ChangeKind(view.kind)],
        run_id=str(view.run_id),
        event_id=str(view.event_id),
        message_id=str(view.message_id) if view.message_id else "",
        error_code=view.error_code or 0,
        changed_at=timestamp(view.changed_at),
    )
    if view.kind == ChangeKind.MESSAGE:
        if view.from_state:
            result.message_from = message_state(MessageState(view.from_state))
        result.message_to = message_state(MessageState(view.to_state))
        result.reason = reason(RejectionReason(view.reason) if view.reason else None)
    else:
        if view.from_state:
            result.run_from = run_state(RunState(view.from_state))
        result.run_to = run_state(RunState(view.to_state))
        result.pause_reason = view.reason or ""
    return result


def changes_response(page: ChangePage) -> pb.ListChangesResponse:
    """ChangePage -> ListChangesResponse."""
    return pb.ListChangesResponse(
        changes=[change(v) for v in page.changes], next_cursor=page.next_cursor
    )


def _stamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp without FromDatetime's calendar arithmetic (the export's hot loop)."""
    if value is None:
        return None
    return Timestamp(seconds=int(value.timestamp()), nanos=value.microsecond * 1000)


def exported(row: ExportRow) -> pb.ExportedMessage:
    """ExportRow -> ExportedMessage."""
    return pb.ExportedMessage(
        message_id=str(row.id),
        position=row.position,
        guest_unit_id=str(row.guest_unit_id),
        person_id=str(row.person_id) if row.person_id else "",
        phone_e164=row.phone_e164 or "",
        state=message_state(row.state),
        reason=reason(row.reason),
        error_code=row.error_code or 0,
        error_title=row.error_title or "",
        do_not_message_reason=row.do_not_message_reason or "",
        language=row.language,
        pricing_category=row.pricing_category or "",
        billable=row.billable,
        sent_at=_stamp(row.sent_at),
        delivered_at=_stamp(row.delivered_at),
        read_at=_stamp(row.read_at),
        failed_at=_stamp(row.failed_at),
    )
