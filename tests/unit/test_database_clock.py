"""The database's clock on a replica's monotonic clock: the estimate is late by no more than the
fastest reading's answer delay, whatever the other readings waited, follows a step of the
database's clock, and forgets readings older than its window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch_service.domain.database_clock import DatabaseClock

EPOCH = datetime(2026, 12, 5, tzinfo=UTC)


def reading(
    clock: DatabaseClock, true_offset: float, at: float, before: float, after: float
) -> float:
    """One schedule read: the query is sent at `at` (monotonic), the database reads its clock
    `before` seconds later, and the answer is read `after` seconds after that."""
    db_now = EPOCH + timedelta(seconds=at + before - true_offset)
    return clock.observe(at, at + before + after, db_now)


@given(
    true_offset=st.floats(-1e6, 1e6),
    delays=st.lists(st.tuples(st.floats(0, 0.5), st.floats(0.0002, 0.5)), min_size=1, max_size=40),
)
def test_the_estimate_is_late_by_at_most_the_fastest_answer_seen(
    true_offset: float, delays: list[tuple[float, float]]
) -> None:
    clock = DatabaseClock(window_seconds=1e9)
    fastest = float("inf")
    for i, (before, after) in enumerate(delays):
        at = 1000.0 + i
        mapped = reading(clock, true_offset, at, before, after)
        fastest = min(fastest, after)
        truth = at + before  # the monotonic moment the database read its clock
        # Never early (a send before its slot), late by the fastest answer only (the same for
        # every claim), however long this reading's answer waited.
        assert truth - 1e-5 <= mapped <= truth + fastest + 1e-5  # float seconds since 1970


@pytest.mark.parametrize(
    ("offset", "answer_wait", "late_by_at_most"),
    [
        # This answer waited 80 ms behind a busy event loop: its slots still map to the moment
        # the database read its clock (within the first reading's 1 ms), not to when the answer
        # was read.
        pytest.param(50.0, 0.080, 0.001, id="a slow answer does not move its claim's slots late"),
        # The database's clock stepped back 2 s: the offset grew by 2 s; the first reading after
        # it proves the old estimate impossible, and the slots follow the new clock.
        pytest.param(52.0, 0.010, 0.010, id="a step back of the clock is followed at once"),
        pytest.param(48.0, 0.005, 0.005, id="a step forward is followed at once"),
    ],
)
def test_a_second_reading_maps_to_when_the_database_read_its_clock(
    offset: float, answer_wait: float, late_by_at_most: float
) -> None:
    clock = DatabaseClock()
    reading(clock, 50.0, at=10.0, before=0.001, after=0.001)
    mapped = reading(clock, offset, at=11.0, before=0.001, after=answer_wait)
    assert abs(mapped - 11.001) <= late_by_at_most + 1e-6


def test_readings_older_than_the_window_are_forgotten() -> None:
    clock = DatabaseClock(window_seconds=30)
    reading(clock, 50.0, at=10.0, before=0.0, after=0.0001)
    mapped = reading(clock, 50.0, at=20.0, before=0.0, after=0.004)
    assert abs(mapped - 20.0001) < 1e-6  # the first reading's bound still holds
    mapped = reading(clock, 50.0, at=45.0, before=0.0, after=0.009)  # the first is 35 s old now
    assert abs(mapped - 45.004) < 1e-6
