"""ApplyStatus messages <-> the use case's command and result (validation included).

A request with any invalid entry is refused as a whole (INVALID_ARGUMENT with one field
violation per problem) and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.vocabulary import ApplyOutcome
from dispatch_service.domain.ids import NOT_AN_ID, parse_uuid_or_none
from dispatch_service.domain.lifecycle import ProviderError, ProviderStatus, StatusUpdate
from dispatch_service.domain.pricing import Pricing, pricing
from dispatch_service.domain.stop_keywords import InboundText, PreferenceUpdate
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, ApplyStatusResult

MAX_UPDATES_PER_CALL = 10_000
"""More than this in one call is refused (Meta batches at most 1,000 updates per POST)."""

OUTCOMES: dict[ApplyOutcome, pb.ApplyOutcome.ValueType] = {
    ApplyOutcome.APPLIED: pb.APPLY_OUTCOME_APPLIED,
    ApplyOutcome.DUPLICATE: pb.APPLY_OUTCOME_DUPLICATE,
    ApplyOutcome.STALE: pb.APPLY_OUTCOME_STALE,
    ApplyOutcome.AFTER_TERMINAL: pb.APPLY_OUTCOME_AFTER_TERMINAL,
    ApplyOutcome.UNKNOWN_STATUS: pb.APPLY_OUTCOME_UNKNOWN_STATUS,
    ApplyOutcome.ORPHANED: pb.APPLY_OUTCOME_ORPHANED,
}

_Timestamped = pb.StatusUpdate | pb.PreferenceUpdate | pb.InboundText


class _Checker:
    """Collects field violations while converting."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def required(self, value: str, field: str) -> str:
        if not value.strip():
            self.violations.append(FieldViolation(field, "is required"))
        return value.strip()

    def provider_timestamp(self, item: _Timestamped, field: str) -> datetime:
        value = item.provider_timestamp
        if not item.HasField("provider_timestamp") or value.seconds <= 0:
            self.violations.append(
                FieldViolation(
                    f"{field}.provider_timestamp", "is required (the provider's timestamp)"
                )
            )
            return datetime.fromtimestamp(0, UTC)
        return value.ToDatetime(tzinfo=UTC)

    def receipt(self, value: str, field: str) -> uuid.UUID | None:
        if not value:
            return None
        parsed = parse_uuid_or_none(value)
        if parsed is None:
            self.violations.append(FieldViolation(field, NOT_AN_ID))
        return parsed


def _status(check: _Checker, item: pb.StatusUpdate, field: str) -> StatusUpdate:
    errors = tuple(ProviderError(e.code, e.title, e.details) for e in item.errors)
    at = check.provider_timestamp(item, field)
    return StatusUpdate(
        provider_message_id=check.required(
            item.provider_message_id, f"{field}.provider_message_id"
        ),
        report=ProviderStatus(check.required(item.status, f"{field}.status").lower(), at, errors),
        phone_number_id=check.required(item.phone_number_id, f"{field}.phone_number_id"),
        recipient_id=item.recipient_id.strip(),
        callback_data=item.callback_data,
        receipt_id=check.receipt(item.receipt_id, f"{field}.receipt_id"),
    )


def _preference(check: _Checker, item: pb.PreferenceUpdate, field: str) -> PreferenceUpdate:
    return PreferenceUpdate(
        phone_number_id=check.required(item.phone_number_id, f"{field}.phone_number_id"),
        wa_id=check.required(item.wa_id, f"{field}.wa_id"),
        category=item.category.strip(),
        value=check.required(item.value, f"{field}.value"),
        at=check.provider_timestamp(item, field),
        receipt_id=check.receipt(item.receipt_id, f"{field}.receipt_id"),
    )


def _inbound(check: _Checker, item: pb.InboundText, field: str) -> InboundText:
    return InboundText(
        phone_number_id=check.required(item.phone_number_id, f"{field}.phone_number_id"),
        from_wa_id=check.required(item.from_wa_id, f"{field}.from_wa_id"),
        text=item.text,
        at=check.provider_timestamp(item, field),
        provider_message_id=item.provider_message_id,
        receipt_id=check.receipt(item.receipt_id, f"{field}.receipt_id"),
    )


def _pricing(item: pb.StatusUpdate) -> Pricing | None:
    block = item.pricing
    if not item.HasField("pricing") or not block.category.strip():
        return None
    return pricing(block.billable, block.category, block.pricing_model, block.type)


def to_command(request: pb.ApplyStatusRequest) -> ApplyStatusCommand:
    """The use case's command, or InvalidArgument naming every bad field."""
    total = len(request.statuses) + len(request.preferences) + len(request.inbound_texts)
    if total > MAX_UPDATES_PER_CALL:
        raise InvalidArgument(
            FieldViolation("statuses", f"at most {MAX_UPDATES_PER_CALL} updates per call")
        )
    check = _Checker()
    command = ApplyStatusCommand(
        statuses=[_status(check, s, f"statuses[{i}]") for i, s in enumerate(request.statuses)],
        preferences=[
            _preference(check, p, f"preferences[{i}]") for i, p in enumerate(request.preferences)
        ],
        inbound_texts=[
            _inbound(check, t, f"inbound_texts[{i}]") for i, t in enumerate(request.inbound_texts)
        ],
        pricing=[_pricing(s) for s in request.statuses],
    )
    if check.violations:
        raise InvalidArgument(*check.violations)
    return command


def to_response(result: ApplyStatusResult) -> pb.ApplyStatusResponse:
    """The response: one outcome per status, in request order."""
    return pb.ApplyStatusResponse(
        status_outcomes=[OUTCOMES[o] for o in result.outcomes],
        do_not_message_added=result.do_not_message_added,
    )
