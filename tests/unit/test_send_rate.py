"""The shared send schedule (GCRA): spacing, horizon, batching floor, headroom and the late-start
bound, the slowest cap it keeps, 130429 halving and recovery."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dispatch_service.domain.send_rate import (
    MIN_MESSAGES_PER_SECOND,
    RateSettings,
    SendSchedule,
    available_slots,
    batch_floor,
    effective_rate,
    lapsed_seconds,
    take,
    throttled,
    wait_seconds,
)
from dispatch_service.settings import DispatchSettings
from tests.unit.settings_support import DISPATCH_REQUIRED

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = RateSettings(messages_per_second=1000 / 9, headroom=0.1, horizon_seconds=0.2)


def fresh(at: datetime = T0) -> SendSchedule:
    return SendSchedule(next_slot_at=at, rate_factor=1.0, rate_factor_at=at - timedelta(hours=1))


def max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, now in enumerate(times):
        while times[left] <= now - 1.0:
            left += 1
        best = max(best, right - left + 1)
    return best


def test_slots_are_spaced_one_over_the_rate_up_to_the_horizon() -> None:
    assert round(effective_rate(fresh(), T0, SETTINGS)) == 100
    slots = available_slots(fresh(), T0, SETTINGS)
    assert slots.count == 21  # 0, 10 ms, ..., 200 ms
    assert round((slots.at(1) - slots.at(0)).total_seconds(), 6) == 0.01


def test_headroom_lowers_the_rate_and_keeps_at_least_three_slots_free() -> None:
    assert effective_rate(fresh(), T0, RateSettings(1000, headroom=0.05)) == 950
    assert RateSettings(20, headroom=0.05).effective_headroom == 0.15


def test_taken_slots_move_the_schedule_and_no_window_gets_more_than_the_rate() -> None:
    schedule, now, times = fresh(), T0, []
    for _ in range(60):  # claims every 50 ms for 3 s, taking everything offered
        slots = available_slots(schedule, now, SETTINGS)
        times += [(slots.at(i) - T0).total_seconds() for i in range(slots.count)]
        schedule = take(schedule, slots, slots.count)
        now += timedelta(milliseconds=50)
    assert len(times) == len(set(times))
    # r slots a second, plus one where a window's two ends both touch a slot (float rounding)
    assert max_in_any_second(times) <= 101


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([MIN_MESSAGES_PER_SECOND, 7, 20, 80, 100, 250, 1000]),
    headroom=st.sampled_from([0.05, 0.1, 0.2]),
    seed=st.integers(0, 2**32),
)
def test_sends_started_within_the_late_tolerance_never_exceed_the_rate(
    rate: int, headroom: float, seed: int
) -> None:
    rng = random.Random(seed)
    limits = RateSettings(rate, headroom=headroom)
    interval = 1 / effective_rate(fresh(), T0, limits)
    late = limits.late_tolerance_seconds
    starts = [i * interval + rng.uniform(0, late) for i in range(int(3 * rate))]
    # Two thirds of the headroom are left for the network: even sends that reach the provider
    # up to that much later than they started still fit in any one second.
    wire = (rate - max_in_any_second(starts)) / (rate * (1 - limits.effective_headroom))
    assert wire >= 2 * late - 1e-9


def test_the_slowest_cap_allowed_still_leaves_time_to_start_a_send() -> None:
    # At 2/s even half the rate as headroom leaves no lateness at all: every send would be
    # given up at its slot (a run at DISPATCH_RATE_PER_SECOND=1 sent nothing in 60 s).
    assert RateSettings(2, headroom=0.5).late_tolerance_seconds == 0
    assert RateSettings(MIN_MESSAGES_PER_SECOND).late_tolerance_seconds > 0.1
    # Every cap from there to 1,000/s leaves some: at least the 12 ms of 60/s with 5% headroom
    # (the three slots a second kept free; MIN_HEADROOM_SLOTS).
    lowest = min(
        RateSettings(rate / 10, headroom=headroom).late_tolerance_seconds
        for rate in range(10 * MIN_MESSAGES_PER_SECOND, 10_001)
        for headroom in (0.05, 0.1, 0.5)
    )
    assert lowest > 0.011


def test_a_cap_the_schedule_cannot_keep_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="dispatch_rate_per_second"):
        DispatchSettings(
            **DISPATCH_REQUIRED, dispatch_rate_per_second=MIN_MESSAGES_PER_SECOND - 0.5
        )
    allowed = DispatchSettings(
        **DISPATCH_REQUIRED, dispatch_rate_per_second=MIN_MESSAGES_PER_SECOND
    )
    assert allowed.dispatch_rate_per_second == MIN_MESSAGES_PER_SECOND


def test_a_claim_waits_for_a_worthwhile_batch() -> None:
    busy = SendSchedule(T0 + timedelta(milliseconds=195), 1.0, T0 - timedelta(hours=1))
    floor = batch_floor(busy, T0, SETTINGS, limit=500)
    assert floor == 10  # half a horizon at 100/s
    assert available_slots(busy, T0, SETTINGS, floor).count == 0
    wait = wait_seconds(busy, T0, SETTINGS, floor)
    later = T0 + timedelta(seconds=wait)
    assert available_slots(busy, later, SETTINGS, floor).count >= floor


def test_a_schedule_behind_starts_again_after_the_claims_lead() -> None:
    behind = fresh(T0 - timedelta(seconds=2))  # its replica was busy with other senders
    lead = 0.08

    slots = available_slots(behind, T0, SETTINGS, lead_seconds=lead)

    assert slots.first == T0 + timedelta(seconds=lead)  # no slot it could not make in time
    assert slots.count == 21  # still a horizon's worth, past the lead
    ahead = fresh(T0 + timedelta(seconds=0.15))
    assert available_slots(ahead, T0, SETTINGS, lead_seconds=lead).first == ahead.next_slot_at


def test_a_schedule_lapses_by_the_time_its_next_slot_lies_before_the_claims_lead() -> None:
    assert lapsed_seconds(fresh(T0 - timedelta(seconds=0.3)), T0, lead_seconds=0.05) == 0.35
    assert lapsed_seconds(fresh(T0 + timedelta(seconds=0.02)), T0, lead_seconds=0.05) == 0.03
    assert lapsed_seconds(fresh(T0 + timedelta(seconds=0.2)), T0, lead_seconds=0.05) == 0.0


def test_the_wait_for_a_batch_counts_the_lead() -> None:
    busy = SendSchedule(T0 + timedelta(milliseconds=295), 1.0, T0 - timedelta(hours=1))
    floor = batch_floor(busy, T0, SETTINGS, limit=500)
    assert available_slots(busy, T0, SETTINGS, floor, lead_seconds=0.1).count == 0
    wait = wait_seconds(busy, T0, SETTINGS, floor, lead_seconds=0.1)
    assert round(wait, 3) == 0.085  # 295 ms + 9 more slots - 200 ms horizon - 100 ms lead
    later = T0 + timedelta(seconds=wait)
    assert available_slots(busy, later, SETTINGS, floor, lead_seconds=0.1).count >= floor


def test_130429_halves_the_rate_once_per_interval_pauses_and_recovers() -> None:
    once = throttled(fresh(), T0, SETTINGS)
    assert once.rate_factor == 0.5
    assert once.next_slot_at >= T0 + timedelta(seconds=1)
    twice = throttled(once, T0 + timedelta(milliseconds=100), SETTINGS)
    assert twice.rate_factor == 0.5  # the same burst of 130429s halves once
    later = throttled(once, T0 + timedelta(seconds=2), SETTINGS)
    assert later.rate_factor < 0.5
    recovered = effective_rate(once, T0 + timedelta(seconds=5), SETTINGS)
    assert 50 < recovered <= 100
    assert round(effective_rate(once, T0 + timedelta(seconds=60), SETTINGS)) == 100
