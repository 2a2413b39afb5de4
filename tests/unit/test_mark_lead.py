"""DISPATCHER_MARK_LEAD_SECONDS: the least time before its slot a message is marked `sending`.

The worker marks earlier when marks take longer (twice their recent round trip), never more than
MAX_MARK_LEAD_SECONDS ahead: that bound is what a crash may leave ambiguous (docs/dispatch.md §5),
so the setting cannot go past it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from dispatch_service.dispatcher.worker import (
    MAX_MARK_LEAD_SECONDS,
    DispatcherConfig,
    Marker,
)
from dispatch_service.settings import DispatchSettings

BASE: dict[str, Any] = {
    "database_url": "postgresql://u@h/db",
    "dispatch_ingestor_token": "ingestor-token-1",
    "dispatch_backend_tokens": "backend-token-1",
    "whatsapp_access_token": "access-token-1",
    "whatsapp_phone_number_id": "1",
}


def test_the_worker_marks_no_later_than_the_setting_says() -> None:
    default = DispatcherConfig.from_settings(DispatchSettings(**BASE))
    early = DispatcherConfig.from_settings(
        DispatchSettings(**BASE, dispatcher_mark_lead_seconds=MAX_MARK_LEAD_SECONDS)
    )
    marker = Marker(None, "replica-a", timedelta(seconds=30))  # type: ignore[arg-type]  # no mark is made

    assert default.mark_lead_seconds == 0.01
    assert marker.lead(default.mark_lead_seconds) == 0.01  # no round trip measured yet
    assert marker.lead(early.mark_lead_seconds) == MAX_MARK_LEAD_SECONDS
    marker.round_trip.add(0.02)
    assert marker.lead(default.mark_lead_seconds) == pytest.approx(0.04)  # twice the round trip
    marker.round_trip.add(1.0)
    assert marker.lead(default.mark_lead_seconds) == MAX_MARK_LEAD_SECONDS


def test_a_lead_past_what_crash_safety_bounds_is_refused() -> None:
    with pytest.raises(ValidationError, match="dispatcher_mark_lead_seconds"):
        DispatchSettings(**BASE, dispatcher_mark_lead_seconds=MAX_MARK_LEAD_SECONDS + 0.01)
    with pytest.raises(ValidationError, match="dispatcher_mark_lead_seconds"):
        DispatchSettings(**BASE, dispatcher_mark_lead_seconds=0)
