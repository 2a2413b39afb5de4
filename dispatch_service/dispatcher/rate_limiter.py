"""The shared per-sender rate limit as the dispatcher uses it: slots for a claim, the 130429
reaction, and provider outages. Postgres holds the schedule and the outage
(persistence.rate_limit); the math is domain.send_rate.

A provider outage (`OutagePolicy`): a replica that sees `threshold` provider failures in a row
for a sender (HTTP 5xx, timeouts, refused or dropped connections; any other answer resets the
count) records an outage on the sender's row. While it lasts no claim gets a slot for the
sender, except one probe message when `next_probe_at` has come (the probe interval doubles up
to a cap each time). The first answer that is not an outage failure ends it, and the sender
sends at its rate again. Messages a replica held for the sender meanwhile go back to `queued`
unsent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.dispatcher.metrics import CURRENT_RATE
from dispatch_service.domain.database_clock import DatabaseClock
from dispatch_service.domain.send_rate import (
    RateSettings,
    SendSchedule,
    Slots,
    available_slots,
    batch_floor,
    effective_rate,
    lapsed_seconds,
    take,
    throttled,
    wait_seconds,
)
from dispatch_service.persistence.rate_limit import (
    SenderOutage,
    end_outage,
    lock_schedule,
    save_schedule,
    start_outage,
    take_probe,
)
from dispatch_service.providers.base import Accepted, Failed, SendOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """Slots offered to a claim, inside the claim's transaction (the schedule row is locked)."""

    sender: str
    schedule: SendSchedule
    db_now: datetime
    slots: Slots
    wait_seconds: float
    outage: SenderOutage | None = None
    """The sender's provider outage, if any: then `slots` is at most one probe."""
    monotonic_at_db_now: float = 0.0
    """`db_now` on this process's time.monotonic() clock (domain.database_clock)."""
    floor: int = 1
    """The fewest slots worth a claim (domain.send_rate.batch_floor)."""
    lead_seconds: float = 0.0
    """How soon after `db_now` the first slot could be."""

    def lapsed_seconds(self) -> float:
        """Schedule time that passed before this claim with no slot taken (send_rate)."""
        return lapsed_seconds(self.schedule, self.db_now, self.lead_seconds)

    def monotonic_at(self, moment: datetime) -> float:
        """A moment on the database's clock (a slot) on this process's monotonic clock."""
        return self.monotonic_at_db_now + (moment - self.db_now).total_seconds()


@dataclass(frozen=True)
class OutagePolicy:
    """When a provider outage is declared, and how it is probed."""

    threshold: int = 20
    probe_seconds: float = 5.0
    probe_cap_seconds: float = 60.0


OUTAGE_WAIT_CAP_SECONDS = 1.0


class SenderRateLimiter:
    """Hands out send slots per sender across all replicas, lowers the rate on 130429, and
    holds a sender's sends during a provider outage."""

    def __init__(self, settings: RateSettings, outage: OutagePolicy | None = None) -> None:
        self.settings = settings
        self.outage = outage or OutagePolicy()
        self.clock = DatabaseClock()

    async def reserve(
        self, session: AsyncSession, sender: str, limit: int, lead_seconds: float = 0.0
    ) -> Reservation:
        """Lock the sender's schedule and offer every slot from `lead_seconds` ahead up to the
        horizon past that (none when fewer than a worthwhile batch are free: `wait_seconds`
        says when they will be). During a provider outage: nothing until the next probe is due,
        then one slot."""
        asked = time.monotonic()
        locked = await lock_schedule(session, sender)
        schedule, db_now, outage = locked.schedule, locked.db_now, locked.outage
        at_db_now = self.clock.observe(asked, time.monotonic(), db_now)
        CURRENT_RATE.labels(sender).set(effective_rate(schedule, db_now, self.settings))
        if outage is not None:
            if db_now < outage.next_probe_at:
                wait = (outage.next_probe_at - db_now).total_seconds()
                return Reservation(
                    sender,
                    schedule,
                    db_now,
                    Slots(0, db_now, 1.0),
                    min(OUTAGE_WAIT_CAP_SECONDS, wait),
                    outage,
                    at_db_now,
                )
            slots = available_slots(schedule, db_now, self.settings, 1, lead_seconds)
            return Reservation(
                sender,
                schedule,
                db_now,
                replace(slots, count=min(1, slots.count)),
                0.0,
                outage,
                at_db_now,
            )
        floor = batch_floor(schedule, db_now, self.settings, limit)
        # Waits aim at a full batch, a claim takes three quarters of one: a claim that comes
        # when its wait said (the lead moved a little since, the clocks round) takes its slots
        # instead of coming back empty.
        accept = max(1, floor * 3 // 4)
        return Reservation(
            sender=sender,
            schedule=schedule,
            db_now=db_now,
            slots=available_slots(schedule, db_now, self.settings, accept, lead_seconds),
            wait_seconds=wait_seconds(schedule, db_now, self.settings, floor, lead_seconds),
            monotonic_at_db_now=at_db_now,
            floor=floor,
            lead_seconds=lead_seconds,
        )

    def wait_after(self, reservation: Reservation, used: int) -> float:
        """Once a claim took `used` of the offered slots: how long until the sender has a
        worthwhile batch again (from the reservation's moment; at least a millisecond). During
        an outage, 0: the next claim learns when the next probe is due."""
        if reservation.outage is not None:
            return 0.0
        after = take(reservation.schedule, reservation.slots, used)
        return wait_seconds(
            after, reservation.db_now, self.settings, reservation.floor, reservation.lead_seconds
        )

    async def commit(self, session: AsyncSession, reservation: Reservation, used: int) -> None:
        """Consume the first `used` offered slots (the rest stay free for other claims); a
        probe pushes the next one back."""
        if used > 0:
            await save_schedule(
                session, reservation.sender, take(reservation.schedule, reservation.slots, used)
            )
            if reservation.outage is not None:
                await take_probe(session, reservation.sender, self.outage.probe_cap_seconds)

    async def declare_outage(
        self, sessions: async_sessionmaker[AsyncSession], sender: str, reason: str
    ) -> None:
        """Record a provider outage for the sender (a no-op when one is already recorded)."""
        async with sessions() as session, session.begin():
            started = await start_outage(session, sender, reason, self.outage.probe_seconds)
        if started:
            log.warning(
                "provider outage for sender %s: %s; holding its sends, first probe in %.0f s",
                sender,
                reason,
                self.outage.probe_seconds,
            )

    async def end_outage(self, sessions: async_sessionmaker[AsyncSession], sender: str) -> None:
        """The provider answered again: the sender sends at its rate."""
        async with sessions() as session, session.begin():
            ended = await end_outage(session, sender)
        if ended:
            log.warning("provider outage for sender %s is over: sending again", sender)

    async def throttle(self, sessions: async_sessionmaker[AsyncSession], sender: str) -> datetime:
        """The provider said 130429: halve the sender's rate (once per interval) and pause it.
        Returns when it locked the schedule to do so (the database's clock)."""
        async with sessions() as session, session.begin():
            locked = await lock_schedule(session, sender)
            db_now = locked.db_now
            lowered = throttled(locked.schedule, db_now, self.settings)
            await save_schedule(session, sender, lowered, throttled=True)
        rate = effective_rate(lowered, db_now, self.settings)
        CURRENT_RATE.labels(sender).set(rate)
        log.warning("sender %s throttled (130429): rate now %.1f/s", sender, rate)
        return db_now


def is_outage_failure(outcome: SendOutcome) -> bool:
    """A failure that says the provider is not answering: HTTP 5xx, or a transport failure
    (timeout, refused or dropped connection)."""
    if not isinstance(outcome, Failed):
        return False
    if outcome.http_status is not None:
        return outcome.http_status >= 500
    return outcome.error_code is None


@dataclass
class OutageWatch:
    """One replica's view of provider failures per sender (see the module docstring)."""

    threshold: int
    streak: dict[str, int] = field(default_factory=dict)
    last_failure: dict[str, str] = field(default_factory=dict)
    in_outage: set[str] = field(default_factory=set)

    def observe(self, sender: str, outcome: SendOutcome) -> str | None:
        """Count one provider answer. Returns "trip" when this failure declares an outage,
        "recovered" when a sender in outage answered, else None."""
        if is_outage_failure(outcome):
            assert isinstance(outcome, Failed)
            self.streak[sender] = self.streak.get(sender, 0) + 1
            self.last_failure[sender] = outcome.error_title
            if self.streak[sender] >= self.threshold and sender not in self.in_outage:
                self.in_outage.add(sender)
                return "trip"
            return None
        if isinstance(outcome, Accepted | Failed):
            self.streak[sender] = 0
            if sender in self.in_outage:
                self.in_outage.discard(sender)
                return "recovered"
        return None

    def reason(self, sender: str) -> str:
        """Why the sender is in outage, for the run and the log."""
        return (
            f"provider not answering: {self.streak.get(sender, 0)} failures in a row"
            f" (last: {self.last_failure.get(sender, 'unknown')})"
        )
