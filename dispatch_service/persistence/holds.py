"""Queued messages held on purpose (quiet hours): how many per reason, and when they are due."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState
from dispatch_service.read_models import HeldCount

HELD = text("""
    SELECT hold_reason, count(*) AS n, min(next_attempt_at) AS first, max(next_attempt_at) AS last
    FROM invite_message
    WHERE run_id = :run AND state = :queued AND hold_reason IS NOT NULL
      AND next_attempt_at > clock_timestamp()
    GROUP BY hold_reason ORDER BY hold_reason
""")


async def held_counts(session: AsyncSession, run_id: uuid.UUID) -> tuple[HeldCount, ...]:
    """The run's queued messages still waiting for a hold to end (index on run_id, state)."""
    rows = await session.execute(HELD, {"run": run_id, "queued": MessageState.QUEUED.value})
    return tuple(HeldCount(r.hold_reason, int(r.n), r.first, r.last) for r in rows)
