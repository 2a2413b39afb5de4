"""Quiet hours in each recipient's local time, with a clock the tests set."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatch_service.domain.quiet_hours import (
    SendWindow,
    next_opening,
    parse_window,
    recipient_zones,
)
from dispatch_service.errors import InvalidArgument

SF = "+14155550100"  # America/Los_Angeles (UTC-8 in December)
NYC = "+12125550100"  # America/New_York (UTC-5)
DAY = parse_window("09:00-21:00")


def utc(hour: int, minute: int = 0, day: int = 4) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_windows_parse_and_wrap_midnight() -> None:
    assert SendWindow(time(9), time(21)) == DAY
    night = parse_window("22:00-06:00")
    assert night.contains(time(23))
    assert night.contains(time(5, 59))
    assert not night.contains(time(6))
    assert not night.contains(time(12))
    assert str(night) == "22:00-06:00"
    for bad in ("9-21", "09:00-09:00", "25:00-26:00", ""):
        with pytest.raises(InvalidArgument):
            parse_window(bad)


def test_local_time_comes_from_the_phone_number() -> None:
    assert recipient_zones(SF) == (ZoneInfo("America/Los_Angeles"),)
    assert recipient_zones(NYC) == (ZoneInfo("America/New_York"),)
    assert recipient_zones("+447700900123") == (UTC,)  # no zone data: fallback


def test_inside_the_window_a_message_goes_now() -> None:
    assert next_opening(DAY, SF, utc(17)) is None  # 09:00 in San Francisco
    assert next_opening(DAY, NYC, utc(14)) is None  # 09:00 in New York


def test_outside_it_waits_for_the_next_local_opening() -> None:
    # 03:00 UTC = 19:00 in SF (inside) but 22:00 in New York (outside): NYC waits for 09:00.
    assert next_opening(DAY, SF, utc(3)) is None
    assert next_opening(DAY, NYC, utc(3)) == utc(14)
    # 05:00 UTC = 21:00 in SF: the window just closed; it opens at 09:00 local = 17:00 UTC.
    assert next_opening(DAY, SF, utc(5)) == utc(17)
    # 16:59 UTC = 08:59 in SF: one minute to wait.
    assert next_opening(DAY, SF, utc(16, 59)) == utc(17)


def test_a_number_spanning_zones_waits_until_it_is_inside_in_all_of_them() -> None:
    russia = "+79161234567"
    zones = recipient_zones(russia)
    assert len(zones) > 1
    opening = next_opening(DAY, russia, utc(0))
    assert opening is not None
    assert all(DAY.contains(opening.astimezone(z).time()) for z in zones)


def test_a_number_whose_zones_never_share_the_window_goes_in_its_first_zones_hours() -> None:
    # Russia's mobiles span Kaliningrad (UTC+2) to Anadyr (UTC+12): a 9-hour window is never
    # open in all of them at once. Each claim asks again when the message comes due; it used
    # to be held at its first zone's opening, then held again there, every day, for ever.
    russia, lisbon = "+79161234567", ZoneInfo("Europe/Lisbon")  # Lisbon: not one of its zones
    window = parse_window("09:00-18:00")
    first = recipient_zones(russia, lisbon)[0]
    now = utc(0)
    for _ in range(3):  # the claims a held message meets
        opening = next_opening(window, russia, now, lisbon)
        if opening is None:
            break
        now = opening
    assert opening is None
    assert window.contains(now.astimezone(first).time())
    assert now - utc(0) < timedelta(days=1)


def test_the_events_zone_places_a_number_without_zone_data() -> None:
    uk = "+447700900123"
    tokyo = ZoneInfo("Asia/Tokyo")
    assert recipient_zones(uk, tokyo) == (tokyo,)
    assert next_opening(DAY, uk, utc(0), tokyo) is None  # 09:00 in Tokyo
    assert next_opening(DAY, uk, utc(0)) == utc(9)  # UTC when the event has no zone


def test_the_events_zone_picks_among_a_numbers_zones_only_when_it_is_one_of_them() -> None:
    russia = "+79161234567"
    moscow, new_york = ZoneInfo("Europe/Moscow"), ZoneInfo("America/New_York")
    assert moscow in recipient_zones(russia)
    assert recipient_zones(russia, moscow) == (moscow,)
    assert recipient_zones(russia, new_york) == recipient_zones(russia)
    assert recipient_zones(SF, moscow) == (ZoneInfo("America/Los_Angeles"),)  # one zone: its own
    assert next_opening(DAY, russia, utc(6), moscow) is None  # 09:00 in Moscow


def test_a_number_without_zone_data_and_an_event_without_a_zone_is_utc() -> None:
    assert recipient_zones("+447700900123") == (UTC,)
