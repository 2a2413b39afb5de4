"""Proto <-> use-case mapping for the DispatchService send path and reads (no logic here).

Enum values map by name: `MessageState.QUEUED` <-> `MESSAGE_STATE_QUEUED`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from common.db.models import PrecheckCandidate
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from common.vocabulary import MessageState, RejectionReason, RunState
from dispatch_service.domain.pricing import total
from dispatch_service.domain.send_plan import HeaderMedia
from dispatch_service.domain.template_checks import TemplateCheck
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.read_models import MessageView, RunRecord
from dispatch_service.use_cases.precheck import PrecheckResult
from dispatch_service.use_cases.reads import EventInvitations, MessagePage, RunStatus


def timestamp(value: datetime | None) -> Timestamp | None:
    """A proto Timestamp, or None to leave the field unset."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def optional_time(request: Message, field: str) -> datetime | None:
    """A Timestamp field as an aware datetime, or None when unset."""
    if not request.HasField(field):
        return None
    stamp: Timestamp = getattr(request, field)
    return stamp.ToDatetime(tzinfo=UTC)


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
    window = result.allowance
    sendable = window.sendable(result.eligible_count)
    frees_at = window.frees_at or window.next_exit_at
    return pb.PrecheckSendResponse(
        messaging_limit=window.limit or 0,
        sendable_now=sendable,
        limit_frees_at=timestamp(frees_at if sendable < result.eligible_count else None),
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
                language=result.language_of(c),
            )
            for c in result.first_page
        ],
        template=_precheck_template(result.template),
        estimated_cost=str(result.estimated_cost) if result.estimated_cost is not None else "",
        currency=result.currency,
        recipients_by_language=[
            pb.LanguageCount(language=language, count=n)
            for language, n in result.by_language.items()
        ],
    )


def header_media(request: pb.StartRunRequest) -> HeaderMedia | None:
    """StartRun's header media, when given."""
    if not request.HasField("header_media"):
        return None
    media = request.header_media
    return HeaderMedia(
        kind=media.type.strip().lower(),
        link=media.link.strip(),
        media_id=media.media_id.strip(),
        filename=media.filename.strip(),
    )


def _precheck_template(check: TemplateCheck | None) -> pb.PrecheckTemplate | None:
    if check is None:
        return None
    facts = check.facts

    def category(value: str | None) -> types.TemplateCategory.ValueType:
        if not value:
            return types.TEMPLATE_CATEGORY_UNSPECIFIED
        return types.TemplateCategory.Value(f"TEMPLATE_CATEGORY_{value.upper()}")

    return pb.PrecheckTemplate(
        name=facts.name,
        language=facts.language,
        status=types.TemplateStatus.Value(f"TEMPLATE_STATUS_{facts.status.upper()}"),
        category=category(facts.category),
        previous_category=category(facts.previous_category),
        pending_category=category(facts.pending_category),
        quality=facts.quality or "",
        source=facts.source,
        notes=list(check.notes),
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
        send_at=timestamp(run.send_at),
        deadline=timestamp(run.deadline),
        parent_run_id=_id(run.parent_run_id),
        send_window=run.send_window or "",
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
        held=[
            pb.HeldCount(
                reason=h.reason,
                count=h.count,
                first_due_at=timestamp(h.first_due_at),
                last_due_at=timestamp(h.last_due_at),
            )
            for h in status.held
        ],
        billable_by_category=[
            pb.CategoryCost(
                category=c.category, billable_count=c.billable, estimated_cost=str(c.cost)
            )
            for c in status.costs
        ],
        estimated_cost=str(total(status.costs)) if status.currency else "",
        currency=status.currency,
        uncreated_count=counts.uncreated,
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


def candidate_recipient(row: PrecheckCandidate) -> pb.PrecheckRecipient:
    """A stored precheck candidate -> PrecheckRecipient."""
    return pb.PrecheckRecipient(
        guest_unit_id=str(row.guest_unit_id),
        person_id=_id(row.person_id),
        display_name=row.display_name,
        phone_e164=row.phone_e164 or "",
        eligible=row.eligible,
        reason=reason(RejectionReason(row.rejection_reason) if row.rejection_reason else None),
        language=row.language or "",
    )
