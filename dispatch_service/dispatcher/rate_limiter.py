"""The shared per-sender rate limit as the dispatcher uses it: slots for a claim, and the 130429
reaction. Postgres holds the schedule (persistence.rate_limit); the math is domain.send_rate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.dispatcher.metrics import CURRENT_RATE
from dispatch_service.domain.send_rate import (
    RateSettings,
    SendSchedule,
    Slots,
    available_slots,
    batch_floor,
    effective_rate,
    take,
    throttled,
    wait_seconds,
)
from dispatch_service.persistence.rate_limit import lock_schedule, save_schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """Slots offered to a claim, inside the claim's transaction (the schedule row is locked)."""

    sender: str
    schedule: SendSchedule
    db_now: datetime
    slots: Slots
    wait_seconds: float


class SenderRateLimiter:
    """Hands out send slots per sender across all replicas, and lowers the rate on 130429."""

    def __init__(self, settings: RateSettings) -> None:
        self.settings = settings

    async def reserve(self, session: AsyncSession, sender: str, limit: int) -> Reservation:
        """Lock the sender's schedule and offer every slot up to the horizon (none when fewer
        than a worthwhile batch are free: `wait_seconds` says when they will be)."""
        schedule, db_now = await lock_schedule(session, sender)
        CURRENT_RATE.labels(sender).set(effective_rate(schedule, db_now, self.settings))
        floor = batch_floor(schedule, db_now, self.settings, limit)
        return Reservation(
            sender=sender,
            schedule=schedule,
            db_now=db_now,
            slots=available_slots(schedule, db_now, self.settings, floor),
            wait_seconds=wait_seconds(schedule, db_now, self.settings, floor),
        )

    async def commit(self, session: AsyncSession, reservation: Reservation, used: int) -> None:
        """Consume the first `used` offered slots (the rest stay free for other claims)."""
        if used > 0:
            await save_schedule(
                session, reservation.sender, take(reservation.schedule, reservation.slots, used)
            )

    async def throttle(self, sessions: async_sessionmaker[AsyncSession], sender: str) -> None:
        """The provider said 130429: halve the sender's rate (once per interval) and pause it."""
        async with sessions() as session, session.begin():
            schedule, db_now = await lock_schedule(session, sender)
            lowered = throttled(schedule, db_now, self.settings)
            await save_schedule(session, sender, lowered, throttled=True)
        rate = effective_rate(lowered, db_now, self.settings)
        CURRENT_RATE.labels(sender).set(rate)
        log.warning("sender %s throttled (130429): rate now %.1f/s", sender, rate)
