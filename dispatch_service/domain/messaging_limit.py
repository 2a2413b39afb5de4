"""Meta's portfolio messaging limit (reference §5.1), as the dispatcher keeps it (pure).

A business portfolio may start conversations with at most its tier's number of unique users in
any moving 24 hours: 250, 2,000, 10,000, 100,000 or unlimited, shared by all its numbers. A
workspace records its sender's tier (`invites limits --messaging-limit 2000`). Every claim of a
run counts the unique recipients its sender's runs were sent to in the last 24 hours (a phone
counts once; a send counts from its claim, failed or not: never over the limit) and claims at
most what remains. When nothing remains, the run's due messages are **held** (they stay queued,
hold reason `messaging_limit`) until the window frees: when enough recipients' last send is 24 h
old. The run is not paused: it continues on its own, and GetRunStatus shows how many wait and
until when. PrecheckSend says how many could go now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch_service.errors import FieldViolation, InvalidArgument

TIERS = (250, 2_000, 10_000, 100_000)
"""Meta's tiers; None is unlimited."""
WINDOW = timedelta(hours=24)


def parse_limit(value: str, field: str = "messaging_limit") -> int | None:
    """A tier ("2000", "TIER_2K"-free plain numbers) or "unlimited" -> int or None."""
    text = value.strip().lower().replace(",", "").replace("_", "")
    if text in ("unlimited", "tierunlimited", "-1"):
        return None
    if text.isdigit() and int(text) in TIERS:
        return int(text)
    raise InvalidArgument(
        FieldViolation(field, f"must be one of {', '.join(map(str, TIERS))} or unlimited")
    )


@dataclass(frozen=True)
class Allowance:
    """How much of a limit the moving window has left, and when more frees up."""

    limit: int | None
    used: int
    frees_at: datetime | None
    """When the window next drops below the limit (None while there is room)."""
    next_exit_at: datetime | None = None
    """When the next recipient leaves the window (a lower bound for when more may go)."""

    @property
    def remaining(self) -> int | None:
        """Unique recipients that may still be started now (None: unlimited)."""
        return None if self.limit is None else max(0, self.limit - self.used)

    def sendable(self, eligible: int) -> int:
        """How many of `eligible` new recipients may go now."""
        remaining = self.remaining
        return eligible if remaining is None else min(eligible, remaining)
