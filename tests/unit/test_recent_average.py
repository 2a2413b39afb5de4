"""The worker's recent round-trip averages (dispatcher.worker.RecentAverage): they follow recent
measures and forget a quiet spell, so a run starting on an idle worker gets no stale lead."""

from __future__ import annotations

import time

import pytest

from dispatch_service.dispatcher.worker import STALE_AVERAGE_SECONDS, RecentAverage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    return clock


def test_it_reads_zero_until_measured_and_then_follows_the_measures(clock: Clock) -> None:
    average = RecentAverage(weight=0.5)
    assert average.value() == 0.0
    average.add(0.1)
    assert average.value() == pytest.approx(0.1)  # the first measure is the average
    clock.now += 0.1
    average.add(0.3)
    assert average.value() == pytest.approx(0.2)


def test_a_quiet_spell_forgets_the_busy_minute_before_it(clock: Clock) -> None:
    average = RecentAverage()
    for _ in range(20):
        average.add(0.4)
        clock.now += 0.05
    clock.now += STALE_AVERAGE_SECONDS + 0.01

    assert average.value() == 0.0
    average.add(0.02)
    assert average.value() == pytest.approx(0.02)  # not pulled toward the old 0.4
