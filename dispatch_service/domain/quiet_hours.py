"""Quiet hours: a sending window in each recipient's local time (pure; the clock is an argument).

A window like ``09:00-21:00`` is set on the workspace and may be overridden per run (StartRun's
``send_window``); ``22:00-06:00`` wraps midnight. A recipient's local time comes from the
phone number's region (phonenumbers' time-zone data), else the event's time zone:

* one zone for the number (a US area code, most countries): that zone;
* several (a country without area-code zones, such as Russia's mobiles): the event's zone when
  it is one of them (a guest invited to an event in Moscow most likely lives in its zone),
  otherwise the message may go only when the time is inside the window in every one of them,
  and when the window is never open in all of them at once (+7 mobiles span ten hours, from
  Kaliningrad to Kamchatka), whenever it is open in its first zone;
* none (no zone data for the number): the event's zone (UTC for an event without one).

The dispatcher asks at claim time: a message due outside its window is held (``held``: it stays
`queued`, due at the next opening). Held messages come due together at the opening, but every
claim still takes send slots from the sender's rate limiter, so there is no burst beyond the rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones

from dispatch_service.errors import FieldViolation, InvalidArgument

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
FALLBACK_ZONE: tzinfo = UTC
SEARCH_DAYS = 2


@dataclass(frozen=True)
class SendWindow:
    """Local hours in which messages may go out: [start, end), wrapping midnight when
    end < start."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        """Whether a local time of day is inside the window."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_window(value: str, field: str = "send_window") -> SendWindow:
    """``HH:MM-HH:MM`` -> SendWindow; InvalidArgument for anything else or an empty window."""
    match = _WINDOW.match(value.strip())
    if not match:
        raise InvalidArgument(FieldViolation(field, "must look like 09:00-21:00"))
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    window = SendWindow(time(h1, m1), time(h2, m2))
    if window.start == window.end:
        raise InvalidArgument(FieldViolation(field, "start and end must differ"))
    return window


@lru_cache(maxsize=4096)
def _number_zones(phone_e164: str) -> tuple[ZoneInfo, ...]:
    """The phone number's time zones in phonenumbers' data (none when it has none)."""
    try:
        number = phonenumbers.parse(phone_e164)
    except phonenumbers.NumberParseException:
        return ()
    names = [n for n in phone_timezones.time_zones_for_number(number) if n != "Etc/Unknown"]
    zones = []
    for name in names:
        try:
            zones.append(ZoneInfo(name))
        except (KeyError, ValueError):  # pragma: no cover - a zone this system's tzdata lacks
            continue
    return tuple(zones)


def recipient_zones(phone_e164: str, event: tzinfo = FALLBACK_ZONE) -> tuple[tzinfo, ...]:
    """The zones a message to `phone_e164` must respect (see the module docstring)."""
    zones = _number_zones(phone_e164)
    if not zones:
        return (event,)
    if len(zones) > 1 and event in zones:
        return (event,)
    return zones


def _inside(window: SendWindow, zones: tuple[tzinfo, ...], at: datetime) -> bool:
    return all(window.contains(at.astimezone(zone).time()) for zone in zones)


def _openings(window: SendWindow, zone: tzinfo, now: datetime) -> list[datetime]:
    """The window's next openings in `zone` (UTC instants after `now`)."""
    local_today = now.astimezone(zone).date()
    result = []
    for day in range(-1, SEARCH_DAYS + 1):
        local = datetime.combine(local_today + timedelta(days=day), window.start, tzinfo=zone)
        instant = local.astimezone(UTC)
        if instant > now:
            result.append(instant)
    return result


def next_opening(
    window: SendWindow, phone_e164: str, now: datetime, event: tzinfo = FALLBACK_ZONE
) -> datetime | None:
    """None when a message to `phone_e164` may go at `now`; else when it may next (UTC).
    `event`: the event's time zone (template_variables.zone), for numbers their own data does
    not place."""
    zones = recipient_zones(phone_e164, event)
    if _inside(window, zones, now):
        return None
    # A moment inside the window in every zone starts at some zone's opening, and openings
    # repeat daily: when none of the next ones is such a moment, there is none at any time, so
    # the first zone alone decides, now as at every later claim (else the message would be held
    # at its first zone's opening, then held again there, every day).
    candidates = sorted({t for zone in zones for t in _openings(window, zone, now)})
    for candidate in candidates:
        if _inside(window, zones, candidate):
            return candidate
    first = zones[:1]
    if _inside(window, first, now):
        return None
    return _openings(window, first[0], now)[0]
