"""Meta's portfolio messaging limit (reference §5.1), as the dispatcher keeps it (pure).

A business portfolio may start conversations with at most its tier's number of unique users in
any moving 24 hours: 250, 2,000, 10,000, 100,000 or unlimited, shared by all its numbers. A
workspace records its sender's tier: set by an operator (`invites limits --messaging-limit
2000`), or read from Meta (its `business_capability_update` and `phone_number_quality_update`
webhooks, and `SyncTemplates`, which asks the phone number's
`whatsapp_business_manager_messaging_limit`); the newest word wins. Every claim of a
run counts the unique recipients the runs of its portfolio were sent to in the last 24 hours
(every sender of a workspace on the same WABA; a phone counts once; a send counts from its
claim, failed or not: never over the limit) and claims at most what remains; the claims of one
portfolio take turns. When nothing remains, the run's due messages are **held** (they stay queued,
hold reason `messaging_limit`) until the window frees: when enough recipients' last send is 24 h
old. The run is not paused: it continues on its own, and GetRunStatus shows how many wait and
until when. PrecheckSend says how many could go now.
"""

from __future__ import annotations

import re
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


_TIER = re.compile(r"^TIER_(\d+)(K?)$")


def provider_limit(value: object) -> int | None:
    """Meta's tier as it writes it -> unique recipients per 24 h, None for unlimited.

    Meta types the webhook value as an integer, lists ``TIER_250`` ... ``TIER_UNLIMITED`` and
    shows ``2000`` in its example (reference §5.1): both are read; ``-1`` and
    ``TIER_UNLIMITED`` are unlimited. Older tiers (``TIER_50``, ``TIER_1K``) read as their
    numbers. Anything else raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a messaging limit tier: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().upper()
        if text in ("TIER_UNLIMITED", "UNLIMITED", "-1"):
            return None
        match = _TIER.match(text)
        if match:
            number = int(match.group(1)) * (1000 if match.group(2) else 1)
        elif text.isdigit():
            number = int(text)
        else:
            raise ValueError(f"not a messaging limit tier: {str(value)[:40]!r}")
    if number == -1:
        return None
    if number <= 0:
        raise ValueError(f"not a messaging limit tier: {number}")
    return number


@dataclass(frozen=True)
class LimitAnnouncement:
    """Meta announcing the messaging limit of WABA `waba_id`'s portfolio at `at`."""

    waba_id: str
    limit: int | None
    """Unique recipients per 24 h; None: unlimited."""
    at: datetime
    field: str = ""
    """The webhook change field it came in (empty: read from the phone number)."""


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
