"""The shared per-sender send schedule (sender_rate_limit): the only coordination between
dispatcher replicas besides row claims. The math is dispatch_service.domain.send_rate.

Every read of a schedule locks its row (FOR UPDATE) and returns the database's clock with it, so
all replicas compute slots against one clock and one schedule, one at a time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.send_rate import SendSchedule

ENSURE = text(
    "INSERT INTO sender_rate_limit (sender_phone_number_id) VALUES (:sender)"
    " ON CONFLICT (sender_phone_number_id) DO NOTHING"
)
LOCK = text(
    "SELECT next_slot_at, rate_factor, rate_factor_at, clock_timestamp() AS db_now"
    " FROM sender_rate_limit WHERE sender_phone_number_id = :sender FOR UPDATE"
)
SAVE = text(
    "UPDATE sender_rate_limit SET next_slot_at = :next_slot_at, rate_factor = :rate_factor,"
    " rate_factor_at = :rate_factor_at, throttled_count = throttled_count + :throttled"
    " WHERE sender_phone_number_id = :sender"
)


async def ensure_schedule(session: AsyncSession, sender: str) -> None:
    """Create the sender's schedule row if it does not exist yet."""
    await session.execute(ENSURE, {"sender": sender})


async def lock_schedule(session: AsyncSession, sender: str) -> tuple[SendSchedule, datetime]:
    """The sender's schedule, locked until the transaction ends, and the database's clock."""
    row = (await session.execute(LOCK, {"sender": sender})).one_or_none()
    if row is None:
        await ensure_schedule(session, sender)
        row = (await session.execute(LOCK, {"sender": sender})).one()
    schedule = SendSchedule(
        next_slot_at=row.next_slot_at,
        rate_factor=float(row.rate_factor),
        rate_factor_at=row.rate_factor_at,
    )
    return schedule, row.db_now


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
