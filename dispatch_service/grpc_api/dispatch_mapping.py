"""Proto <-> use-case mapping for the DispatchService send path and reads (no logic here).

Enum values map by name: `MessageState.QUEUED` <-> `MESSAGE_STATE_QUEUED`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from common.vocabulary import MessageState, RejectionReason, RunState
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.messages import MessageView
from dispatch_service.persistence.runs import RunRecord
from dispatch_service.use_cases.precheck import PrecheckResult
from dispatch_service.use_cases.reads import EventInvitations, MessagePage, RunStatus


def timestamp(value: datetime | None) -> Timestamp | None:
    """A proto Timestamp, or None to leave the field unset."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def message_state(state: MessageState) -> types.MessageState.ValueType:
    """MessageState -> MESSAGE_STATE_*."""
    return types.MessageState.Value(f"MESSAGE_STATE_{state.name}")


def run_state(state: RunState) -> types.RunState.ValueType:
    """RunState -> RUN_STATE_*."""
    return types.RunState.Value(f"RUN_STATE_{state.name}")


def reason(value: RejectionReason | None) -> types.RejectionReason.ValueType:
    """RejectionReason (or none) -> REJECTION_REASON_*."""
    name = value.name if value is not None else "UNSPECIFIED"
    return types.RejectionReason.Value(f"REJECTION_REASON_{name}")


def states_from_proto(values: Iterable[int], field: str) -> list[MessageState]:
    """MESSAGE_STATE_* values -> MessageState; InvalidArgument for UNSPECIFIED or unknown."""
    by_number = {message_state(s): s for s in MessageState}
    result = []
    for value in values:
        if value not in by_number:
            raise InvalidArgument(FieldViolation(field, f"{value} is not a message state"))
        result.append(by_number[types.MessageState.ValueType(value)])
    return result


def reasons_from_proto(values: Iterable[int], field: str) -> list[RejectionReason]:
    """REJECTION_REASON_* values -> RejectionReason; InvalidArgument for UNSPECIFIED/unknown."""
    by_number = {reason(r): r for r in RejectionReason}
    result = []
    for value in values:
        if value not in by_number:
            raise InvalidArgument(FieldViolation(field, f"{value} is not a rejection reason"))
        result.append(by_number[types.RejectionReason.ValueType(value)])
    return result


def _id(value: uuid.UUID | None) -> str:
    return str(value) if value is not None else ""


def precheck_response(result: PrecheckResult) -> pb.PrecheckSendResponse:
    """PrecheckResult -> PrecheckSendResponse."""
    return pb.PrecheckSendResponse(
        precheck_id=str(result.precheck_id),
        expires_at=timestamp(result.expires_at),
        audience_hash=result.audience_hash,
        total_count=result.total_count,
        eligible_count=result.eligible_count,
        blocked_count=result.blocked_count,
        blocked_by_reason=[
            types.ReasonCount(reason=reason(r), count=n)
            for r, n in result.blocked_by_reason.items()
        ],
        recipients=[
            pb.PrecheckRecipient(
                guest_unit_id=str(c.target.guest_unit_id),
                person_id=_id(c.target.person_id),
                display_name=c.target.display_name,
                phone_e164=c.target.phone_e164 or "",
                eligible=c.eligible,
                reason=reason(c.reason),
            )
            for c in result.first_page
        ],
    )


def run_message(run: RunRecord) -> pb.Run:
    """RunRecord -> Run."""
    return pb.Run(
        run_id=str(run.id),
        event_id=str(run.event_id),
        template_id=str(run.template_id),
        language=run.language,
        precheck_id=str(run.precheck_id),
        actor_id=str(run.actor_id),
        idempotency_key=run.idempotency_key,
        state=run_state(run.state),
        pause_reason=run.pause_reason or "",
        created_at=timestamp(run.created_at),
        finished_at=timestamp(run.finished_at),
    )


def run_status(status: RunStatus) -> pb.RunStatus:
    """RunStatus -> RunStatus proto (every state listed, zeros included)."""
    counts = status.counts
    run = run_message(status.run)
    if status.outage is not None:
        run.provider_outage_reason = status.outage.reason
        run.next_probe_at.FromDatetime(status.outage.next_probe_at.astimezone(UTC))
    return pb.RunStatus(
        run=run,
        total_count=counts.total,
        by_state=[
            types.StateCount(state=message_state(s), count=n) for s, n in counts.by_state.items()
        ],
        blocked_by_reason=[
            types.ReasonCount(reason=reason(r), count=n)
            for r, n in counts.blocked_by_reason.items()
        ],
        failed_by_error_code=[
            types.ErrorCodeCount(error_code=c, count=n)
            for c, n in sorted(counts.failed_by_error_code.items())
        ],
        failed_by_reason=[
            types.ReasonCount(reason=reason(r), count=n) for r, n in counts.failed_by_reason.items()
        ],
        final_count=counts.done,
        progress=counts.progress,
    )


def message(view: MessageView) -> pb.RunMessage:
    """MessageView -> RunMessage."""
    return pb.RunMessage(
        message_id=str(view.id),
        guest_unit_id=str(view.guest_unit_id),
        person_id=_id(view.person_id),
        phone_e164=view.phone_e164 or "",
        state=message_state(view.state),
        reason=reason(view.reason),
        provider_message_id=view.provider_message_id or "",
        error_code=view.error_code or 0,
        error_title=view.error_title or "",
        attempt_count=view.attempt_count,
        sent_at=timestamp(view.sent_at),
        delivered_at=timestamp(view.delivered_at),
        read_at=timestamp(view.read_at),
        failed_at=timestamp(view.failed_at),
    )


def messages_response(page: MessagePage) -> pb.ListRunMessagesResponse:
    """MessagePage -> ListRunMessagesResponse."""
    return pb.ListRunMessagesResponse(
        messages=[message(v) for v in page.messages], next_page_token=page.next_page_token
    )


def event_invitations_response(result: EventInvitations) -> pb.GetEventInvitationsResponse:
    """EventInvitations -> GetEventInvitationsResponse."""
    return pb.GetEventInvitationsResponse(
        runs=[run_message(r) for r in result.runs],
        recipients=[_recipient(v) for v in result.latest],
        next_page_token=result.next_page_token,
    )


def _recipient(view: MessageView) -> pb.EventRecipient:
    return pb.EventRecipient(
        guest_unit_id=str(view.guest_unit_id),
        phone_e164=view.phone_e164 or "",
        run_id=str(view.run_id),
        latest=message(view),
    )
