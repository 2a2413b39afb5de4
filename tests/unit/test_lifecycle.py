"""The pure lifecycle rules: the transition table and order-independence properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.vocabulary import ApplyOutcome, MessageState, RejectionReason
from dispatch_service.domain.lifecycle import (
    Lifecycle,
    ProviderError,
    ProviderStatus,
    apply_status,
    opts_out,
    replay,
)
from dispatch_service.domain.transitions import RANK

T0 = datetime(2030, 1, 1, tzinfo=UTC)
A = ApplyOutcome
S = MessageState


def status(name: str, seconds: int = 0, *errors: ProviderError) -> ProviderStatus:
    return ProviderStatus(name, T0 + timedelta(seconds=seconds), errors)


@pytest.mark.parametrize(
    ("state", "incoming", "outcome", "after"),
    [
        (S.QUEUED, "sent", A.APPLIED, S.SENT),
        (S.SENDING, "delivered", A.APPLIED, S.DELIVERED),
        (S.SENT, "delivered", A.APPLIED, S.DELIVERED),
        (S.SENT, "read", A.APPLIED, S.READ),
        (S.DELIVERED, "read", A.APPLIED, S.READ),
        (S.DELIVERED, "sent", A.STALE, S.DELIVERED),
        (S.READ, "delivered", A.STALE, S.READ),
        (S.READ, "sent", A.STALE, S.READ),
        (S.SENT, "sent", A.STALE, S.SENT),
        (S.QUEUED, "failed", A.APPLIED, S.FAILED),
        (S.SENDING, "failed", A.APPLIED, S.FAILED),
        (S.SENT, "failed", A.APPLIED, S.FAILED),
        (S.DELIVERED, "failed", A.APPLIED, S.FAILED),
        (S.READ, "failed", A.AFTER_TERMINAL, S.READ),
        (S.FAILED, "read", A.AFTER_TERMINAL, S.FAILED),
        (S.FAILED, "delivered", A.AFTER_TERMINAL, S.FAILED),
        (S.FAILED, "sent", A.AFTER_TERMINAL, S.FAILED),
        (S.BLOCKED, "sent", A.AFTER_TERMINAL, S.BLOCKED),
        (S.CANCELLED, "failed", A.AFTER_TERMINAL, S.CANCELLED),
        (S.SENT, "played", A.UNKNOWN_STATUS, S.SENT),
        (S.DELIVERED, "deleted", A.UNKNOWN_STATUS, S.DELIVERED),
    ],
)
def test_transition_table(state: S, incoming: str, outcome: A, after: S) -> None:
    got, message = apply_status(Lifecycle(state), status(incoming))
    assert (got, message.state) == (outcome, after)


def test_read_implies_delivered_and_a_late_delivered_keeps_the_earliest_time() -> None:
    message, outcomes = replay(Lifecycle(S.SENT), [status("read", 20), status("delivered", 10)])
    assert outcomes == [A.APPLIED, A.STALE]
    assert (message.state, message.delivered_at, message.read_at) == (
        S.READ,
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=20),
    )


def test_provider_sent_time_replaces_the_accept_time() -> None:
    accepted = Lifecycle(S.SENT, sent_at=T0)
    _, message = apply_status(accepted, status("sent", 3))
    assert message.sent_at == T0 + timedelta(seconds=3)


def test_failed_copies_the_first_error_and_the_reason() -> None:
    error = ProviderError(131026, "Message undeliverable", "details")
    _, message = apply_status(Lifecycle(S.SENT), status("failed", 5, error, ProviderError(1)))
    assert message.error == error
    assert message.rejection_reason is RejectionReason.PROVIDER_REJECTED
    assert message.failed_at == T0 + timedelta(seconds=5)


def test_contradicting_terminal_statuses_change_nothing() -> None:
    read, _ = replay(Lifecycle(S.SENT), [status("read", 5)])
    _, after = apply_status(read, status("failed", 6, ProviderError(131000)))
    assert after == read
    failed, _ = replay(Lifecycle(S.SENT), [status("failed", 5)])
    _, after = apply_status(failed, status("read", 6))
    assert after == failed


def test_repeats_are_duplicates() -> None:
    _, outcomes = replay(Lifecycle(S.SENT), [status("delivered", 1), status("delivered", 2)])
    assert outcomes == [A.APPLIED, A.DUPLICATE]


def test_a_marketing_cap_failure_defers_until_the_message_was_delivered() -> None:
    capped = status("failed", 9, ProviderError(131049, "cap"))
    for start in (S.QUEUED, S.SENDING, S.SENT):
        outcome, after = apply_status(Lifecycle(start, sent_at=T0), capped)
        assert (outcome, after) == (
            A.APPLIED,
            Lifecycle(S.QUEUED, error=ProviderError(131049, "cap"), deferred=True),
        )
    # Twilio's 63049 is the same cap
    _, after = apply_status(Lifecycle(S.SENT), status("failed", 9, ProviderError(63049)))
    assert after.deferred
    # delivered, then a cap failure: contradictory; the table's failed stands
    _, after = apply_status(Lifecycle(S.DELIVERED), capped)
    assert (after.state, after.deferred) == (S.FAILED, False)
    # any status of the deferred send is stale
    deferred = Lifecycle(S.QUEUED, error=ProviderError(131049), deferred=True)
    for name in ("sent", "delivered", "read", "failed"):
        assert apply_status(deferred, status(name, 20)) == (A.STALE, deferred)


def test_a_marketing_cap_failure_of_the_last_attempt_allowed_fails_the_message() -> None:
    # As the send's own answer does after DISPATCH_MAX_ATTEMPTS calls: a cap that never lifts
    # (US numbers get no marketing templates at all) must not re-send every day for ever.
    capped = status("failed", 9, ProviderError(131049, "cap"))
    for start in (S.QUEUED, S.SENDING, S.SENT):
        outcome, after = apply_status(Lifecycle(start, sent_at=T0, last_attempt=True), capped)
        assert outcome is A.APPLIED
        assert (after.state, after.rejection_reason, after.error, after.deferred) == (
            S.FAILED,
            RejectionReason.RETRIES_EXHAUSTED,
            ProviderError(131049, "cap"),
            False,
        )
        assert after.failed_at == capped.at
    # any other failure of the last attempt is the provider's rejection, as before
    _, after = apply_status(
        Lifecycle(S.SENT, last_attempt=True), status("failed", 9, ProviderError(131026))
    )
    assert (after.state, after.rejection_reason) == (S.FAILED, RejectionReason.PROVIDER_REJECTED)


def test_only_131050_failures_opt_out() -> None:
    assert opts_out(status("failed", 0, ProviderError(131026), ProviderError(131050)))
    assert not opts_out(status("failed", 0, ProviderError(131026)))
    assert not opts_out(status("delivered", 0, ProviderError(131050)))


# --- properties --------------------------------------------------------------------------------

START = st.sampled_from([S.QUEUED, S.SENDING, S.SENT])


@st.composite
def consistent_history(draw: st.DrawFn) -> list[ProviderStatus]:
    """Statuses one real message can get: sent ≤ delivered ≤ read, or failed at the end."""
    ending = draw(st.sampled_from(["sent", "delivered", "read", "read-only", "failed", "deferred"]))
    times = sorted(draw(st.lists(st.integers(0, 10_000), min_size=3, max_size=3)))
    history = [status("sent", times[0])]
    if ending in ("delivered", "read", "failed") and draw(st.booleans()):
        history.append(status("delivered", times[1]))
    if ending in ("read", "read-only"):
        history.append(status("read", times[2]))
    if ending == "failed":
        history.append(status("failed", times[2], ProviderError(131026)))
    if ending == "deferred":  # Meta's per-user marketing cap: not delivered, try again later
        history.append(status("failed", times[2], ProviderError(131049)))
    if draw(st.booleans()):
        history.append(status("played", times[2]))
    if not draw(st.booleans()):  # the sent webhook itself may never come
        history = history[1:] or history
    return history


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[ProviderStatus], list[ProviderStatus]]:
    """A history and one way Meta could deliver it: shuffled, with repeats."""
    history = draw(consistent_history())
    repeats = draw(st.lists(st.sampled_from(history), max_size=4))
    arrival = draw(st.permutations(history + repeats))
    return history, arrival


@given(start=START, case=deliveries())
def test_any_arrival_order_gives_the_same_final_message(
    start: S, case: tuple[list[ProviderStatus], list[ProviderStatus]]
) -> None:
    history, arrival = case
    in_order, _ = replay(Lifecycle(start), history)
    shuffled, _ = replay(Lifecycle(start), arrival)
    assert shuffled == in_order


@given(start=START, case=deliveries())
def test_the_state_never_goes_back(
    start: S, case: tuple[list[ProviderStatus], list[ProviderStatus]]
) -> None:
    message = Lifecycle(start)
    for incoming in case[1]:
        _, after = apply_status(message, incoming)
        if message.deferred:
            assert after == message
        elif message.state in (S.READ, S.FAILED):
            assert after.state == message.state
        elif after.deferred:  # the one way back: a deferral, before delivery
            assert after.state == S.QUEUED
            assert message.state in (S.QUEUED, S.SENDING, S.SENT)
        elif after.state != S.FAILED:
            assert RANK[after.state] >= RANK[message.state]
        message = after


@given(start=START, case=deliveries())
def test_timestamps_are_the_providers(
    start: S, case: tuple[list[ProviderStatus], list[ProviderStatus]]
) -> None:
    history, arrival = case
    final, _ = replay(Lifecycle(start), arrival)
    times = {s.status: s.at for s in history}
    if final.deferred:  # the send's times are forgotten: the next send starts afresh
        assert final == Lifecycle(S.QUEUED, error=ProviderError(131049), deferred=True)
        return
    assert final.sent_at == times.get("sent")
    delivered = [times[k] for k in ("delivered", "read") if k in times]
    assert final.delivered_at == (min(delivered) if delivered else None)
    assert final.read_at == times.get("read")
    assert final.failed_at == times.get("failed")


@given(start=START, case=deliveries())
def test_replaying_everything_again_changes_nothing(
    start: S, case: tuple[list[ProviderStatus], list[ProviderStatus]]
) -> None:
    once, _ = replay(Lifecycle(start), case[1])
    twice, outcomes = replay(Lifecycle(start), case[1] + case[1])
    assert twice == once
    assert outcomes[len(case[1]) :] == [A.DUPLICATE] * len(case[1])
