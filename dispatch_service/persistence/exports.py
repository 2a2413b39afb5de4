"""A run's recipients for export, in audience order, one keyset batch at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.read_models import ExportRow

EXPORT_BATCH = text("""
    SELECT m.id, m.position, m.guest_unit_id, m.person_id, m.phone_e164, m.state,
           m.rejection_reason, m.error_code, m.error_title, d.reason AS dnm_reason, r.language,
           m.pricing_category, coalesce(m.pricing_billable, false) AS billable,
           m.sent_at, m.delivered_at, m.read_at, m.failed_at
    FROM invite_message m
    JOIN invite_send_run r ON r.id = m.run_id
    LEFT JOIN do_not_message_entry d
      ON m.rejection_reason = 'do_not_message' AND d.workspace_id = m.workspace_id
     AND d.phone_e164 = m.phone_e164 AND d.removed_at IS NULL
    WHERE m.run_id = :run AND m.position > :after
    ORDER BY m.position
    LIMIT :limit
""")


async def export_batch(
    session: AsyncSession, run_id: uuid.UUID, after_position: int, limit: int
) -> list[ExportRow]:
    """Up to `limit` recipients of the run after `after_position`."""
    result = await session.execute(
        EXPORT_BATCH, {"run": run_id, "after": after_position, "limit": limit}
    )
    states = {s.value: s for s in MessageState}
    reasons = {r.value: r for r in RejectionReason}
    # Positional unpacking: the hot loop of a 100,000-row export.
    return [
        ExportRow(
            id=id_,
            position=position,
            guest_unit_id=unit,
            person_id=person,
            phone_e164=phone,
            state=states[state],
            reason=reasons[reason] if reason else None,
            error_code=code,
            error_title=title,
            do_not_message_reason=dnm,
            language=language,
            pricing_category=category,
            billable=billable,
            sent_at=sent,
            delivered_at=delivered,
            read_at=read,
            failed_at=failed,
        )
        for (
            id_,
            position,
            unit,
            person,
            phone,
            state,
            reason,
            code,
            title,
            dnm,
            language,
            category,
            billable,
            sent,
            delivered,
            read,
            failed,
        ) in cast(Iterable[Any], result)
    ]
