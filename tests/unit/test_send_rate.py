"""The shared send schedule (GCRA): spacing, horizon, batching floor, 130429 halving, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch_service.domain.send_rate import (
    RateSettings,
    SendSchedule,
    available_slots,
    batch_floor,
    effective_rate,
    take,
    throttled,
    wait_seconds,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = RateSettings(messages_per_second=100, headroom=0.0, horizon_seconds=0.2)


def fresh(at: datetime = T0) -> SendSchedule:
    return SendSchedule(next_slot_at=at, rate_factor=1.0, rate_factor_at=at - timedelta(hours=1))


def test_slots_are_spaced_one_over_the_rate_up_to_the_horizon() -> None:
    slots = available_slots(fresh(), T0, SETTINGS)
    assert slots.count == 21  # 0, 10 ms, ..., 200 ms
    assert slots.at(1) - slots.at(0) == timedelta(milliseconds=10)


def test_taken_slots_move_the_schedule_and_no_window_gets_more_than_the_rate() -> None:
    schedule, now, times = fresh(), T0, []
    for _ in range(60):  # claims every 50 ms for 3 s, taking everything offered
        slots = available_slots(schedule, now, SETTINGS)
        times += [slots.at(i) for i in range(slots.count)]
        schedule = take(schedule, slots, slots.count)
        now += timedelta(milliseconds=50)
    times.sort()
    assert times == sorted(set(times))
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t - start < timedelta(seconds=1)]
        assert len(in_window) <= 100


def test_headroom_lowers_the_rate() -> None:
    settings = RateSettings(messages_per_second=1000, headroom=0.05)
    assert effective_rate(fresh(), T0, settings) == 950


def test_a_claim_waits_for_a_worthwhile_batch() -> None:
    busy = SendSchedule(T0 + timedelta(milliseconds=195), 1.0, T0 - timedelta(hours=1))
    floor = batch_floor(busy, T0, SETTINGS, limit=500)
    assert floor == 10  # half a horizon at 100/s
    assert available_slots(busy, T0, SETTINGS, floor).count == 0
    wait = wait_seconds(busy, T0, SETTINGS, floor)
    later = T0 + timedelta(seconds=wait)
    assert available_slots(busy, later, SETTINGS, floor).count >= floor


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
    assert effective_rate(once, T0 + timedelta(seconds=60), SETTINGS) == 100
