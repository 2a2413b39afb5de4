"""Template variable names -> values: the documented mapping, and unknown names refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatch_service.domain.template_variables import (
    EventFacts,
    VariableSource,
    fill,
    variable_sources,
)
from dispatch_service.errors import FailedPrecondition

EVENT = EventFacts("Our wedding", datetime(2026, 10, 12, 19, 0, tzinfo=UTC), "Old Mill")


def test_known_names_and_aliases_map_to_their_sources() -> None:
    names = ["guest_name", "Household", "event_name", "event_date", "location", "event_time"]
    assert variable_sources(names) == [
        VariableSource.CONTACT_NAME,
        VariableSource.HOUSEHOLD_NAME,
        VariableSource.EVENT_NAME,
        VariableSource.EVENT_DATE,
        VariableSource.EVENT_LOCATION,
        VariableSource.EVENT_TIME,
    ]


def test_unknown_names_are_a_failed_precondition_naming_them() -> None:
    with pytest.raises(FailedPrecondition, match="dress_code"):
        variable_sources(["name", "dress_code"])


def test_values_in_template_order_with_the_household_as_fallback_name() -> None:
    sources = variable_sources(["name", "event_date", "venue", "household"])
    assert fill(sources, EVENT, "Jane", "The Smiths") == [
        "Jane",
        "Mon 12 Oct 2026, 19:00",
        "Old Mill",
        "The Smiths",
    ]
    assert fill(sources, EVENT, "  ", "The Smiths")[0] == "The Smiths"


def test_dates_and_times_are_written_in_the_events_time_zone() -> None:
    from dispatch_service.domain.template_variables import VariableSource, event_value, zone

    late = EventFacts(
        "Party", datetime(2031, 6, 1, 23, 30, tzinfo=UTC), "Hall", time_zone="America/New_York"
    )
    assert event_value(VariableSource.EVENT_DATE, late) == "Sun 1 Jun 2031, 19:30"
    assert event_value(VariableSource.EVENT_DAY, late) == "Sun 1 Jun 2031"
    assert event_value(VariableSource.EVENT_TIME, late) == "19:30"
    # A daylight-saving change is the zone's, not a fixed offset: January is UTC-5 there.
    winter = EventFacts("P", datetime(2031, 1, 10, 23, 30, tzinfo=UTC), "H", "America/New_York")
    assert event_value(VariableSource.EVENT_TIME, winter) == "18:30"
    assert event_value(VariableSource.EVENT_TIME, EVENT) == "19:00"  # UTC by default
    assert zone("Not/AZone") is UTC
