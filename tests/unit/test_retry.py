"""Retry classification (the §2.3 table), HTTP-status rules, back-off and the next step."""

from __future__ import annotations

import random

import pytest

from dispatch_service.domain.retry import (
    ERROR_CODES,
    Backoff,
    NextStep,
    RetryClass,
    classify_code,
    classify_http_error,
    decide,
    recipient_backoff_seconds,
)

BACKOFF = Backoff(base_seconds=2.0, cap_seconds=60.0)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (4, RetryClass.TRANSIENT),
        (80007, RetryClass.TRANSIENT),
        (130429, RetryClass.TRANSIENT),
        (131000, RetryClass.TRANSIENT),
        (131016, RetryClass.TRANSIENT),
        (131057, RetryClass.TRANSIENT),
        (2, RetryClass.TRANSIENT),
        (131056, RetryClass.RECIPIENT_BACKOFF),
        (131026, RetryClass.TERMINAL),
        (131050, RetryClass.TERMINAL),
        (131049, RetryClass.DEFER),
        (100, RetryClass.TERMINAL),
        (130403, RetryClass.TERMINAL),
        (0, RetryClass.HALT),
        (190, RetryClass.HALT),
        (3, RetryClass.HALT),
        (10, RetryClass.HALT),
        (200, RetryClass.HALT),
        (250, RetryClass.HALT),
        (299, RetryClass.HALT),
        (368, RetryClass.HALT),
        (131005, RetryClass.HALT),
        (131031, RetryClass.HALT),
        (131042, RetryClass.HALT),
        (131048, RetryClass.HALT),
        (131063, RetryClass.HALT),
        (131064, RetryClass.HALT),
        (132000, RetryClass.HALT),
        (132001, RetryClass.HALT),
        (132015, RetryClass.HALT),
        (132016, RetryClass.HALT),
        (133010, RetryClass.HALT),
        (999999, RetryClass.TERMINAL),
        # Twilio (reference whatsapp-cloud-api §7 and meta-2026-and-twilio §6.6)
        (63012, RetryClass.TRANSIENT),
        (63021, RetryClass.TERMINAL),
        (63024, RetryClass.TERMINAL),
    ],
)
def test_codes_are_classified_as_the_reference_table_says(code: int, expected: RetryClass) -> None:
    assert classify_code(code).retry_class is expected


def test_only_throttles_lower_the_rate_and_only_opt_outs_add_do_not_message() -> None:
    # Meta 130429; Twilio 20429 and 63018 (reference meta-2026-and-twilio §6.6).
    assert sorted(c for c, r in ERROR_CODES.items() if r.lowers_rate) == [20429, 63018, 130429]
    # Meta 131050; Twilio 21610 (STOP).
    assert sorted(c for c, r in ERROR_CODES.items() if r.adds_do_not_message) == [21610, 131050]


def test_a_5xx_is_ambiguous_even_with_a_transient_code_in_its_body() -> None:
    # The sandbox (like Meta) may answer 500/131000 for a message it did accept.
    assert classify_http_error(500, 131000).retry_class is RetryClass.AMBIGUOUS
    assert classify_http_error(503, None).retry_class is RetryClass.AMBIGUOUS


def test_4xx_goes_by_code_and_bodiless_throttles_are_transient() -> None:
    assert classify_http_error(400, 131026).retry_class is RetryClass.TERMINAL
    assert classify_http_error(400, 131000).retry_class is RetryClass.TRANSIENT
    assert classify_http_error(429, None).retry_class is RetryClass.TRANSIENT
    assert classify_http_error(404, None).retry_class is RetryClass.TERMINAL


def test_full_jitter_backoff_stays_under_the_exponential_ceiling_and_the_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)]:
        delays = [BACKOFF.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole range is used (full jitter)


def test_recipient_backoff_is_four_to_the_x() -> None:
    assert [recipient_backoff_seconds(a) for a in (1, 2, 3, 4)] == [1.0, 4.0, 16.0, 64.0]


def decision(retry_class: RetryClass, attempt: int, max_attempts: int = 3) -> NextStep:
    rng = random.Random(1)
    return decide(retry_class, attempt, max_attempts=max_attempts, backoff=BACKOFF, rng=rng).step


def test_transient_requeues_until_the_attempts_are_used_up() -> None:
    assert decision(RetryClass.TRANSIENT, 1) is NextStep.REQUEUE
    assert decision(RetryClass.TRANSIENT, 2) is NextStep.REQUEUE
    assert decision(RetryClass.TRANSIENT, 3) is NextStep.FAIL_RETRIES_EXHAUSTED
    assert decision(RetryClass.RECIPIENT_BACKOFF, 3) is NextStep.FAIL_RETRIES_EXHAUSTED


def test_the_recipient_backoff_delay_is_used_for_131056() -> None:
    rng = random.Random(1)
    result = decide(RetryClass.RECIPIENT_BACKOFF, 2, max_attempts=5, backoff=BACKOFF, rng=rng)
    assert result == (result.__class__(NextStep.REQUEUE, 4.0))


def test_the_marketing_cap_defers_until_the_attempts_are_used_up() -> None:
    assert decision(RetryClass.DEFER, 1) is NextStep.DEFER
    assert decision(RetryClass.DEFER, 2) is NextStep.DEFER
    assert decision(RetryClass.DEFER, 3) is NextStep.FAIL_RETRIES_EXHAUSTED


def test_terminal_halt_and_ambiguous_never_requeue() -> None:
    assert decision(RetryClass.TERMINAL, 1) is NextStep.FAIL_REJECTED
    assert decision(RetryClass.HALT, 1) is NextStep.PAUSE_RUN
    assert decision(RetryClass.AMBIGUOUS, 1) is NextStep.LEAVE_SENDING
    assert decision(RetryClass.AMBIGUOUS, 99) is NextStep.LEAVE_SENDING


def test_accepted_needs_no_decision() -> None:
    with pytest.raises(ValueError, match="accepted"):
        decision(RetryClass.ACCEPTED, 1)
