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
