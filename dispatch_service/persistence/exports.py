"""A run's recipients for export, in audience order, one keyset batch at a time."""

from __future__ import annotations

import uuid

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
    rows = await session.execute(
        EXPORT_BATCH, {"run": run_id, "after": after_position, "limit": limit}
    )
    return [
        ExportRow(
            id=r.id,
            position=r.position,
            guest_unit_id=r.guest_unit_id,
            person_id=r.person_id,
            phone_e164=r.phone_e164,
            state=MessageState(r.state),
            reason=RejectionReason(r.rejection_reason) if r.rejection_reason else None,
            error_code=r.error_code,
            error_title=r.error_title,
            do_not_message_reason=r.dnm_reason,
            language=r.language,
            pricing_category=r.pricing_category,
            billable=r.billable,
            sent_at=r.sent_at,
            delivered_at=r.delivered_at,
            read_at=r.read_at,
            failed_at=r.failed_at,
        )
        for r in rows
    ]
