"""Which value fills each template variable (pure). Values are frozen per message at StartRun.

A template's variables are an ordered list of names; each name maps to one source (names are
compared trimmed and case-insensitively):

    name(s)                                             value
    --------------------------------------------------  -------------------------------------------
    name, guest_name, contact_name, recipient_name      the household contact's display name
                                                        (the household's name when it is empty)
    household, household_name, guest_unit, family       the household (guest unit) name
    event, event_name                                   the event's name
    event_date, date                                    the event's start, e.g. "Sat 12 Oct 2026,
                                                        19:00", in the event's time zone and the
                                                        message's language ("sáb 12 oct 2026,
                                                        19:00" for es)
    event_day                                           the start date only, "Sat 12 Oct 2026"
    event_time, time                                    the start time only, "19:00" (event's zone)
    event_location, location, venue                    the event's location

Any other name makes StartRun fail with FAILED_PRECONDITION naming it: a run never sends a
template with a parameter we cannot fill. Values are sent to the provider in the template's
variable order as body text parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime

from dispatch_service.errors import FailedPrecondition


class VariableSource(StrEnum):
    """Where a template variable's value comes from."""

    CONTACT_NAME = "contact_name"
    HOUSEHOLD_NAME = "household_name"
    EVENT_NAME = "event_name"
    EVENT_DATE = "event_date"
    EVENT_DAY = "event_day"
    EVENT_TIME = "event_time"
    EVENT_LOCATION = "event_location"


_ALIASES: dict[VariableSource, tuple[str, ...]] = {
    VariableSource.CONTACT_NAME: ("name", "guest_name", "contact_name", "recipient_name"),
    VariableSource.HOUSEHOLD_NAME: ("household", "household_name", "guest_unit", "family"),
    VariableSource.EVENT_NAME: ("event", "event_name"),
    VariableSource.EVENT_DATE: ("event_date", "date"),
    VariableSource.EVENT_DAY: ("event_day",),
    VariableSource.EVENT_TIME: ("event_time", "time"),
    VariableSource.EVENT_LOCATION: ("event_location", "location", "venue"),
}
SOURCES_BY_NAME = {alias: source for source, names in _ALIASES.items() for alias in names}

PER_RECIPIENT = frozenset({VariableSource.CONTACT_NAME, VariableSource.HOUSEHOLD_NAME})
"""Sources that differ per message; the others are the same for the whole run."""


def variable_sources(names: Sequence[str]) -> list[VariableSource]:
    """The source of each variable, in order; FailedPrecondition naming the unknown ones."""
    sources = [SOURCES_BY_NAME.get(n.strip().casefold()) for n in names]
    unknown = [n for n, s in zip(names, sources, strict=True) if s is None]
    if unknown:
        known = ", ".join(sorted(SOURCES_BY_NAME))
        raise FailedPrecondition(
            f"the template has variables this service cannot fill: {', '.join(unknown)} "
            f"(known names: {known})",
            reason="UNKNOWN_TEMPLATE_VARIABLE",
        )
    return [s for s in sources if s is not None]


@dataclass(frozen=True)
class EventFacts:
    """The event values templates may use."""

    name: str
    starts_at: datetime
    location: str
    time_zone: str = "UTC"
    """IANA name; dates and times are written in it (an unknown one falls back to UTC)."""


DATE_PATTERNS = {
    VariableSource.EVENT_DATE: "EEE d MMM y, HH:mm",
    VariableSource.EVENT_DAY: "EEE d MMM y",
    VariableSource.EVENT_TIME: "HH:mm",
}
"""CLDR patterns of the date sources (English: "Sat 12 Oct 2026, 19:00")."""


def event_value(source: VariableSource, event: EventFacts, language: str | None = None) -> str:
    """The value of a run-wide source for `event` (per-recipient sources are not run-wide), its
    dates in the event's time zone and `language` (a template language such as ``es`` or
    ``pt_BR``; English for none or one CLDR does not know)."""
    if source is VariableSource.EVENT_NAME:
        return event.name
    if source is VariableSource.EVENT_LOCATION:
        return event.location
    if source not in DATE_PATTERNS:
        raise ValueError(f"{source} differs per recipient")
    start = event.starts_at.astimezone(zone(event.time_zone))
    return str(format_datetime(start, DATE_PATTERNS[source], locale=_locale(language)))


@lru_cache(maxsize=64)
def _locale(language: str | None) -> Locale:
    try:
        return Locale.parse(language or "en")
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def zone(name: str) -> tzinfo:
    """The IANA time zone `name`, or UTC when it is empty or unknown here."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def is_time_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this process knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def recipient_value(source: VariableSource, contact_name: str, household_name: str) -> str:
    """A per-recipient value (a contact without a name falls back to the household's)."""
    if source is VariableSource.CONTACT_NAME:
        return contact_name.strip() or household_name
    if source is VariableSource.HOUSEHOLD_NAME:
        return household_name
    raise ValueError(f"{source} is run-wide")


def fill(
    sources: Sequence[VariableSource], event: EventFacts, contact_name: str, household_name: str
) -> list[str]:
    """Every variable's value for one recipient, in template order."""
    return [
        recipient_value(s, contact_name, household_name)
        if s in PER_RECIPIENT
        else event_value(s, event)
        for s in sources
    ]
