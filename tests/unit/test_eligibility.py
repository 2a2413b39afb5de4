"""Eligibility policy: every reason, its precedence, duplicates (first active wins), the hash."""

from __future__ import annotations

import uuid

from common.vocabulary import PhoneStatus, RejectionReason
from dispatch_service.domain.audience import AudienceTarget
from dispatch_service.domain.eligibility import (
    PolicyInputs,
    audience_hash,
    blocked_by_reason,
    evaluate_audience,
)

NONE = PolicyInputs(do_not_message=frozenset(), already_invited=frozenset())


def target(
    phone: str | None = "+14155550100",
    *,
    status: PhoneStatus | None = None,
    active: bool = True,
    name: str = "Household",
) -> AudienceTarget:
    return AudienceTarget(
        guest_unit_id=uuid.uuid4(),
        guest_unit_name=name,
        person_id=uuid.uuid4(),
        display_name="Jane",
        phone_e164=phone,
        phone_status=status or (PhoneStatus.VALID if phone else PhoneStatus.MISSING),
        active=active,
    )


def reasons(targets: list[AudienceTarget], inputs: PolicyInputs = NONE) -> list[str | None]:
    return [c.reason.value if c.reason else None for c in evaluate_audience(targets, inputs)]


def test_an_active_guest_with_a_valid_phone_is_eligible() -> None:
    [candidate] = evaluate_audience([target()], NONE)
    assert candidate.eligible
    assert candidate.position == 0


def test_no_phone_and_malformed_phone_have_their_own_reasons() -> None:
    assert reasons([target(None), target(None, status=PhoneStatus.MALFORMED)]) == [
        "no_phone",
        "invalid_phone",
    ]


def test_inactive_comes_before_phone_problems() -> None:
    assert reasons([target(None, active=False)]) == ["guest_inactive"]


def test_do_not_message_blocks() -> None:
    inputs = PolicyInputs(do_not_message=frozenset({"+14155550100"}), already_invited=frozenset())
    assert reasons([target("+14155550100"), target("+14155550101")], inputs) == [
        "do_not_message",
        None,
    ]


def test_already_invited_blocks_unless_a_resend_is_asked_for() -> None:
    invited = frozenset({"+14155550100"})
    assert reasons([target()], PolicyInputs(frozenset(), invited)) == ["already_invited"]
    resend = PolicyInputs(frozenset(), invited, resend_phones=frozenset({"+14155550100"}))
    assert reasons([target()], resend) == [None]


def test_do_not_message_wins_over_a_resend() -> None:
    phone = "+14155550100"
    inputs = PolicyInputs(frozenset({phone}), frozenset({phone}), frozenset({phone}))
    assert reasons([target(phone)], inputs) == ["do_not_message"]


def test_the_same_phone_twice_first_wins() -> None:
    assert reasons([target(), target(), target()]) == [None, "duplicate_target", "duplicate_target"]


def test_an_inactive_first_occurrence_does_not_shadow_an_active_one() -> None:
    assert reasons([target(active=False), target()]) == ["duplicate_target", None]


def test_only_one_non_duplicate_row_per_phone_whatever_the_reasons() -> None:
    phone = "+14155550100"
    inputs = PolicyInputs(frozenset({phone}), frozenset())
    result = reasons([target(phone, active=False), target(phone), target(phone)], inputs)
    assert result == ["duplicate_target", "do_not_message", "duplicate_target"]


def test_blocked_counts_by_reason() -> None:
    candidates = evaluate_audience([target(), target(), target(None)], NONE)
    assert blocked_by_reason(candidates) == {
        RejectionReason.DUPLICATE_TARGET: 1,
        RejectionReason.NO_PHONE: 1,
    }


def test_the_hash_depends_on_targets_outcomes_and_order() -> None:
    a, b = target("+14155550100"), target("+14155550101")
    first = audience_hash(evaluate_audience([a, b], NONE))
    assert first == audience_hash(evaluate_audience([a, b], NONE))
    assert first != audience_hash(evaluate_audience([b, a], NONE))
    blocked = PolicyInputs(frozenset({"+14155550100"}), frozenset())
    assert first != audience_hash(evaluate_audience([a, b], blocked))
