"""ApplyStatus messages <-> the use case's command and result (validation included).

A request with any invalid entry is refused as a whole (INVALID_ARGUMENT with one field
violation per problem) and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from common.db.receipts import Settlement
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.vocabulary import ApplyOutcome, ReceiptFlag, ReceiptState, SenderProvider
from dispatch_service.domain.identities import ProviderContact
from dispatch_service.domain.ids import NOT_AN_ID, parse_uuid_or_none
from dispatch_service.domain.lifecycle import ProviderError, ProviderStatus, StatusUpdate
from dispatch_service.domain.messaging_limit import LimitAnnouncement, provider_limit
from dispatch_service.domain.meta_templates import (
    TemplateField,
    TemplateWebhook,
    normalise_language,
)
from dispatch_service.domain.pricing import Pricing, pricing
from dispatch_service.domain.stop_keywords import InboundText, PreferenceUpdate
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, ApplyStatusResult
from dispatch_service.use_cases.templates import TemplateUpdateOutcome

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

TEMPLATE_OUTCOMES: dict[TemplateUpdateOutcome, pb.TemplateUpdateOutcome.ValueType] = {
    TemplateUpdateOutcome.APPLIED: pb.TEMPLATE_UPDATE_OUTCOME_APPLIED,
    TemplateUpdateOutcome.UNCHANGED: pb.TEMPLATE_UPDATE_OUTCOME_UNCHANGED,
    TemplateUpdateOutcome.STALE: pb.TEMPLATE_UPDATE_OUTCOME_STALE,
    TemplateUpdateOutcome.UNMATCHED: pb.TEMPLATE_UPDATE_OUTCOME_UNMATCHED,
}

_Timestamped = (
    pb.StatusUpdate
    | pb.PreferenceUpdate
    | pb.InboundText
    | pb.TemplateUpdate
    | pb.MessagingLimitUpdate
)


class _Checker:
    """Collects field violations while converting."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []
        # The statuses of one webhook share its receipt id and, mostly, its timestamps: each is
        # parsed once per call (a 2,000-status call spent a third of its conversion on them).
        self._receipts: dict[str, uuid.UUID] = {}
        self._moments: dict[tuple[int, int], datetime] = {}

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
        key = (value.seconds, value.nanos)
        moment = self._moments.get(key)
        if moment is None:
            moment = self._moments[key] = value.ToDatetime(tzinfo=UTC)
        return moment

    def receipt(self, value: str, field: str) -> uuid.UUID | None:
        if not value:
            return None
        parsed = self._receipts.get(value) or parse_uuid_or_none(value)
        if parsed is None:
            self.violations.append(FieldViolation(field, NOT_AN_ID))
        else:
            self._receipts[value] = parsed
        return parsed

    def provider(self, value: str, field: str) -> SenderProvider:
        """The provider that reported an update; empty is Meta (older ingestors)."""
        if not value:
            return SenderProvider.META
        try:
            return SenderProvider(value)
        except ValueError:
            known = ", ".join(p.value for p in SenderProvider)
            self.violations.append(FieldViolation(field, f"is not a provider ({known})"))
            return SenderProvider.META

    def phone_or_user_id(self, phone: str, user_id: str, field: str, names: str) -> None:
        if not phone.strip() and not user_id.strip():
            self.violations.append(FieldViolation(field, f"needs {names} (one at least)"))


def _contacts(items: Iterable[pb.ProviderContact]) -> tuple[ProviderContact, ...]:
    return tuple(
        ProviderContact(
            wa_id=c.wa_id.strip(),
            user_id=c.user_id.strip(),
            parent_user_id=c.parent_user_id.strip(),
            username=c.username.strip(),
        )
        for c in items
        if c.wa_id.strip() or c.user_id.strip()
    )


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
        recipient_user_id=item.recipient_user_id.strip(),
        recipient_parent_user_id=item.recipient_parent_user_id.strip(),
        recipient_type=item.recipient_type.strip().lower(),
        participant_id=item.participant_id.strip(),
        participant_user_id=item.participant_user_id.strip(),
        contacts=_contacts(item.contacts),
        provider=check.provider(item.provider, f"{field}.provider"),
        pricing=_pricing(item),
    )


def _preference(check: _Checker, item: pb.PreferenceUpdate, field: str) -> PreferenceUpdate:
    check.phone_or_user_id(item.wa_id, item.user_id, field, "wa_id or user_id")
    return PreferenceUpdate(
        phone_number_id=check.required(item.phone_number_id, f"{field}.phone_number_id"),
        wa_id=item.wa_id.strip(),
        category=item.category.strip(),
        value=check.required(item.value, f"{field}.value"),
        at=check.provider_timestamp(item, field),
        receipt_id=check.receipt(item.receipt_id, f"{field}.receipt_id"),
        user_id=item.user_id.strip(),
        parent_user_id=item.parent_user_id.strip(),
    )


def _inbound(check: _Checker, item: pb.InboundText, field: str) -> InboundText:
    check.phone_or_user_id(item.from_wa_id, item.from_user_id, field, "from_wa_id or from_user_id")
    return InboundText(
        phone_number_id=check.required(item.phone_number_id, f"{field}.phone_number_id"),
        from_wa_id=item.from_wa_id.strip(),
        text=item.text,
        at=check.provider_timestamp(item, field),
        provider_message_id=item.provider_message_id,
        receipt_id=check.receipt(item.receipt_id, f"{field}.receipt_id"),
        from_user_id=item.from_user_id.strip(),
        from_parent_user_id=item.from_parent_user_id.strip(),
        username=item.username.strip(),
    )


def _template_update(check: _Checker, item: pb.TemplateUpdate, field: str) -> TemplateWebhook:
    try:
        kind = TemplateField(item.field.strip())
    except ValueError:
        check.violations.append(
            FieldViolation(f"{field}.field", f"must be one of {', '.join(TemplateField)}")
        )
        kind = TemplateField.STATUS
    return TemplateWebhook(
        waba_id=check.required(item.waba_id, f"{field}.waba_id"),
        field=kind,
        meta_template_id=item.meta_template_id.strip(),
        name=check.required(item.name, f"{field}.name"),
        language=normalise_language(check.required(item.language, f"{field}.language")),
        at=int(check.provider_timestamp(item, field).timestamp()),
        event=item.event.strip(),
        reason=item.reason.strip(),
        detail=item.detail.strip(),
        new_quality=item.new_quality.strip(),
        new_category=item.new_category.strip(),
        previous_category=item.previous_category.strip(),
        correct_category=item.correct_category.strip(),
        body_text=item.body_text,
        header_text=item.header_text,
        footer_text=item.footer_text,
        buttons=tuple(
            {"type": b.type, "text": b.text, "url": b.url, "phone_number": b.phone_number}
            for b in item.buttons
        ),
    )


def _pricing(item: pb.StatusUpdate) -> Pricing | None:
    block = item.pricing
    if not item.HasField("pricing") or not block.category.strip():
        return None
    return pricing(block.billable, block.category, block.pricing_model, block.type)


def _limit_update(check: _Checker, item: pb.MessagingLimitUpdate, field: str) -> LimitAnnouncement:
    written = check.required(item.max_daily_conversations_per_business, f"{field}.limit")
    try:
        limit = provider_limit(written)
    except ValueError:
        if written:
            check.violations.append(
                FieldViolation(
                    f"{field}.max_daily_conversations_per_business",
                    "must be a tier: an integer, TIER_250 ... TIER_100K or TIER_UNLIMITED",
                )
            )
        limit = None
    return LimitAnnouncement(
        waba_id=check.required(item.waba_id, f"{field}.waba_id"),
        limit=limit,
        at=check.provider_timestamp(item, field),
        field=item.field.strip(),
    )


APPLIED_RECEIPT_FLAGS = frozenset({"", ReceiptFlag.UNREADABLE_ITEMS, ReceiptFlag.IGNORED})
"""The flags an applied receipt may carry (the others go with receipts never applied)."""


def _settlement(check: _Checker, item: pb.ReceiptSettlement, field: str) -> Settlement:
    named = f"{field}.receipt_id"
    receipt_id = check.receipt(check.required(item.receipt_id, named), named)
    workspace_id = parse_uuid_or_none(item.workspace_id) if item.workspace_id else None
    if item.workspace_id and workspace_id is None:
        check.violations.append(FieldViolation(f"{field}.workspace_id", NOT_AN_ID))
    if item.flag not in APPLIED_RECEIPT_FLAGS:
        check.violations.append(
            FieldViolation(f"{field}.flag", "must be empty, unreadable_items or ignored")
        )
    if item.notes_json:
        try:
            notes = orjson.loads(item.notes_json)
        except orjson.JSONDecodeError:
            notes = None
        if not isinstance(notes, list):
            check.violations.append(FieldViolation(f"{field}.notes_json", "must be a JSON array"))
    return Settlement(
        receipt_id=receipt_id or uuid.UUID(int=0),
        state=ReceiptState.APPLIED,
        flag=item.flag or None,
        phone_number_id=item.phone_number_id.strip() or None,
        workspace_id=workspace_id,
        notes=item.notes_json or None,
    )


def to_command(request: pb.ApplyStatusRequest) -> ApplyStatusCommand:
    """The use case's command, or InvalidArgument naming every bad field."""
    total = (
        len(request.statuses)
        + len(request.preferences)
        + len(request.inbound_texts)
        + len(request.template_updates)
        + len(request.messaging_limit_updates)
    )
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
        template_updates=[
            _template_update(check, t, f"template_updates[{i}]")
            for i, t in enumerate(request.template_updates)
        ],
        limit_updates=[
            _limit_update(check, u, f"messaging_limit_updates[{i}]")
            for i, u in enumerate(request.messaging_limit_updates)
        ],
        settle_receipts=[
            _settlement(check, r, f"settle_receipts[{i}]")
            for i, r in enumerate(request.settle_receipts)
        ],
    )
    if check.violations:
        raise InvalidArgument(*check.violations)
    return command


def to_response(result: ApplyStatusResult) -> pb.ApplyStatusResponse:
    """The response: one outcome per status, in request order."""
    return pb.ApplyStatusResponse(
        status_outcomes=[OUTCOMES[o] for o in result.outcomes],
        do_not_message_added=result.do_not_message_added,
        template_outcomes=[TEMPLATE_OUTCOMES[o] for o in result.template_outcomes],
        paused_run_ids=[str(r) for r in result.paused_runs],
        settled_receipts=[
            pb.SettledReceipt(receipt_id=str(r.receipt_id), lag_seconds=r.lag_seconds)
            for r in result.settled_receipts
        ],
    )
