"""DISPATCHER_MARK_LEAD_SECONDS: the least time before its slot a message is marked `sending`.

The worker marks earlier when marks take longer (twice their recent round trip), never more than
MAX_MARK_LEAD_SECONDS ahead: that bound is what a crash may leave ambiguous (docs/dispatch.md §5),
so the setting cannot go past it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dispatch_service.dispatcher.worker import (
    MARK_GROUP_SECONDS,
    MAX_MARK_LEAD_SECONDS,
    DispatcherConfig,
    Marker,
)
from dispatch_service.settings import DispatchSettings
from tests.unit.settings_support import DISPATCH_REQUIRED


def idle_marker(group: float = MARK_GROUP_SECONDS) -> Marker:
    """A marker that is only asked when to mark (it has no connection: no mark is made)."""
    return Marker(None, "replica-a", timedelta(seconds=30), group=group)  # type: ignore[arg-type]


def test_the_worker_marks_no_later_than_the_setting_says() -> None:
    default = DispatcherConfig.from_settings(DispatchSettings(**DISPATCH_REQUIRED))
    early = DispatcherConfig.from_settings(
        DispatchSettings(**DISPATCH_REQUIRED, dispatcher_mark_lead_seconds=MAX_MARK_LEAD_SECONDS)
    )
    marker = idle_marker()

    assert default.mark_lead_seconds == 0.01
    assert marker.lead(default.mark_lead_seconds) == 0.01  # no round trip measured yet
    assert marker.lead(early.mark_lead_seconds) == MAX_MARK_LEAD_SECONDS
    marker.round_trip.add(0.02)
    assert marker.lead(default.mark_lead_seconds) == pytest.approx(0.04)  # twice the round trip
    marker.round_trip.add(1.0)
    assert marker.lead(default.mark_lead_seconds) == MAX_MARK_LEAD_SECONDS


def test_a_lead_past_what_crash_safety_bounds_is_refused() -> None:
    with pytest.raises(ValidationError, match="dispatcher_mark_lead_seconds"):
        DispatchSettings(
            **DISPATCH_REQUIRED, dispatcher_mark_lead_seconds=MAX_MARK_LEAD_SECONDS + 0.01
        )
    with pytest.raises(ValidationError, match="dispatcher_mark_lead_seconds"):
        DispatchSettings(**DISPATCH_REQUIRED, dispatcher_mark_lead_seconds=0)


@given(
    slot=st.floats(min_value=1.0, max_value=1e6),
    minimum=st.floats(min_value=0.001, max_value=MAX_MARK_LEAD_SECONDS),
    round_trip=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_mark_is_asked_for_on_the_grid_never_later_than_its_lead_nor_earlier_than_the_bound(
    slot: float, minimum: float, round_trip: float
) -> None:
    marker = idle_marker()
    if round_trip:
        marker.round_trip.add(round_trip)
    ask = marker.ask_at(slot, minimum)
    assert ask <= slot - marker.lead(minimum)  # never later than the lead says
    assert ask >= slot - MAX_MARK_LEAD_SECONDS - 1e-9  # the most a crash may leave ambiguous
    on_grid = ask % MARK_GROUP_SECONDS
    assert min(on_grid, MARK_GROUP_SECONDS - on_grid) < 1e-6 or ask == pytest.approx(
        slot - MAX_MARK_LEAD_SECONDS
    )


def test_the_slots_of_one_step_of_the_grid_ask_for_their_marks_together() -> None:
    marker = idle_marker()
    slots = [100.0 + i / 900 for i in range(900)]  # one second at 900/s
    asks = {marker.ask_at(slot, 0.01) for slot in slots}
    assert len(asks) <= 1 / MARK_GROUP_SECONDS + 1
    ungrouped = idle_marker(group=0)
    assert len({ungrouped.ask_at(slot, 0.01) for slot in slots}) == 900
