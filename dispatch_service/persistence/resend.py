"""ResendRun's read of an earlier run: the households in the chosen outcome classes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState
from dispatch_service.domain.resend import NOT_READ_STATES, ResendSelection

SELECTED = text("""
    SELECT DISTINCT guest_unit_id, phone_e164,
      (state = ANY(CAST(:not_read_states AS text[]))) AS not_read
    FROM invite_message
    WHERE run_id = :run AND phone_e164 IS NOT NULL AND (
      (state = :failed AND rejection_reason = ANY(CAST(:reasons AS text[])))
      OR (state = :failed AND error_code = ANY(CAST(:codes AS int[])))
      OR (CAST(:cutoff AS timestamptz) IS NOT NULL
          AND state = ANY(CAST(:not_read_states AS text[]))
          AND sent_at <= CAST(:cutoff AS timestamptz)))
""")


@dataclass(frozen=True)
class Selected:
    """The households selected, and the phones selected for not being read (the precheck lists
    those as resend phones: their invitation went out, so they count as invited)."""

    units: frozenset[uuid.UUID]
    not_read_phones: tuple[str, ...]


async def selected_recipients(
    session: AsyncSession, run_id: uuid.UUID, selection: ResendSelection, now: datetime
) -> Selected:
    """The earlier run's households whose message is in one of the selected classes."""
    cutoff = now - selection.not_read_after if selection.not_read_after else None
    rows = (
        await session.execute(
            SELECTED,
            {
                "run": run_id,
                "failed": MessageState.FAILED.value,
                "reasons": sorted(r.value for r in selection.failed_reasons),
                "codes": list(selection.error_codes),
                "cutoff": cutoff,
                "not_read_states": sorted(s.value for s in NOT_READ_STATES),
            },
        )
    ).all()
    return Selected(
        units=frozenset(r.guest_unit_id for r in rows),
        not_read_phones=tuple(sorted({r.phone_e164 for r in rows if r.not_read})),
    )
