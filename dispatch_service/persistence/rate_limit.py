"""The shared per-sender send schedule (sender_rate_limit): the only coordination between
dispatcher replicas besides row claims. The math is dispatch_service.domain.send_rate.

Every read of a schedule locks its row (FOR UPDATE) and returns the database's clock with it, so
all replicas compute slots against one clock and one schedule, one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.send_rate import SendSchedule

ENSURE = text(
    "INSERT INTO sender_rate_limit (sender_phone_number_id) VALUES (:sender)"
    " ON CONFLICT (sender_phone_number_id) DO NOTHING"
)
OUTAGE_COLUMNS = "outage_reason, outage_since, next_probe_at, probe_interval_seconds"
"""A sender's provider outage as stored (see SenderOutage and outage_of)."""
LOCK = text(
    # The clock is read outside the locking subquery, so after the lock was granted: a clock in
    # the locking SELECT's own list is read before it waits for the lock (and read again only
    # when the holder updated the row), which would date the slots by the wait.
    "SELECT s.*, clock_timestamp() AS db_now FROM ("
    f" SELECT next_slot_at, rate_factor, rate_factor_at, {OUTAGE_COLUMNS} FROM sender_rate_limit"
    " WHERE sender_phone_number_id = :sender FOR UPDATE) AS s"
)
SAVE = text(
    "UPDATE sender_rate_limit SET next_slot_at = :next_slot_at, rate_factor = :rate_factor,"
    " rate_factor_at = :rate_factor_at, throttled_count = throttled_count + :throttled"
    " WHERE sender_phone_number_id = :sender"
)


async def ensure_schedule(session: AsyncSession, sender: str) -> None:
    """Create the sender's schedule row if it does not exist yet."""
    await session.execute(ENSURE, {"sender": sender})


@dataclass(frozen=True)
class LockedSchedule:
    """A sender's schedule under its row lock, its outage if any, and the database's clock
    once the lock was granted."""

    schedule: SendSchedule
    db_now: datetime
    outage: SenderOutage | None


async def lock_schedule(session: AsyncSession, sender: str) -> LockedSchedule:
    """The sender's schedule and outage, locked until the transaction ends, and the database's
    clock (one round trip once the row exists)."""
    row = (await session.execute(LOCK, {"sender": sender})).one_or_none()
    if row is None:
        await ensure_schedule(session, sender)
        row = (await session.execute(LOCK, {"sender": sender})).one()
    schedule = SendSchedule(
        next_slot_at=row.next_slot_at,
        rate_factor=float(row.rate_factor),
        rate_factor_at=row.rate_factor_at,
    )
    return LockedSchedule(schedule, row.db_now, outage_of(row))


async def save_schedule(
    session: AsyncSession, sender: str, schedule: SendSchedule, *, throttled: bool = False
) -> None:
    """Store the sender's schedule (the caller holds its lock)."""
    await session.execute(
        SAVE,
        {
            "sender": sender,
            "next_slot_at": schedule.next_slot_at,
            "rate_factor": schedule.rate_factor,
            "rate_factor_at": schedule.rate_factor_at,
            "throttled": 1 if throttled else 0,
        },
    )


# --- provider outages (per sender, shared by every replica) -------------------------------------


@dataclass(frozen=True)
class SenderOutage:
    """A sender whose provider is failing: nothing is sent but one probe at `next_probe_at`."""

    reason: str
    since: datetime
    next_probe_at: datetime
    probe_interval_seconds: float


def outage_sql(sender: str) -> str:
    """The outage of the sender named by `sender` (a column of the enclosing statement): one
    row with OUTAGE_COLUMNS, or none."""
    return (
        f"SELECT {OUTAGE_COLUMNS} FROM sender_rate_limit"
        f" WHERE sender_phone_number_id = {sender} AND outage_reason IS NOT NULL"
    )


def outage_of(row: Any) -> SenderOutage | None:
    """The outage in a row with OUTAGE_COLUMNS (None: no row, or no outage)."""
    if row is None or row.outage_reason is None:
        return None
    return SenderOutage(
        reason=row.outage_reason,
        since=row.outage_since,
        next_probe_at=row.next_probe_at,
        probe_interval_seconds=float(row.probe_interval_seconds),
    )


async def start_outage(
    session: AsyncSession, sender: str, reason: str, probe_seconds: float
) -> bool:
    """Record an outage for the sender (first probe `probe_seconds` from now); False when one
    was already recorded (another replica saw it first)."""
    await ensure_schedule(session, sender)
    result = await session.execute(
        text(
            "UPDATE sender_rate_limit SET outage_reason = :reason,"
            " outage_since = clock_timestamp(),"
            " next_probe_at = clock_timestamp() + make_interval(secs => :probe),"
            " probe_interval_seconds = :probe"
            " WHERE sender_phone_number_id = :sender AND outage_reason IS NULL"
        ),
        {"sender": sender, "reason": reason, "probe": probe_seconds},
    )
    return cast(CursorResult[Any], result).rowcount > 0


async def take_probe(session: AsyncSession, sender: str, interval_cap_seconds: float) -> None:
    """A probe was handed out: the next one waits twice as long (up to the cap)."""
    await session.execute(
        text(
            "UPDATE sender_rate_limit SET"
            " probe_interval_seconds = least(:cap, probe_interval_seconds * 2),"
            " next_probe_at = clock_timestamp()"
            "   + make_interval(secs => least(:cap, probe_interval_seconds * 2))"
            " WHERE sender_phone_number_id = :sender AND outage_reason IS NOT NULL"
        ),
        {"sender": sender, "cap": interval_cap_seconds},
    )


async def end_outage(session: AsyncSession, sender: str) -> bool:
    """The provider answered again: the sender sends at its rate. False when there was none."""
    result = await session.execute(
        text(
            "UPDATE sender_rate_limit SET outage_reason = NULL, outage_since = NULL,"
            " next_probe_at = NULL, probe_interval_seconds = 0"
            " WHERE sender_phone_number_id = :sender AND outage_reason IS NOT NULL"
        ),
        {"sender": sender},
    )
    return cast(CursorResult[Any], result).rowcount > 0
