"""Read side of messages: a run's messages and each household's latest invitation, paged."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.read_models import MessageView

_VIEW_COLUMNS = """
    m.id, m.run_id, m.position, m.guest_unit_id, m.person_id, m.phone_e164, m.state,
    m.rejection_reason, m.provider_message_id, m.error_code, m.error_title, m.attempt_count,
    m.sent_at, m.delivered_at, m.read_at, m.failed_at
"""


def _view(row: Any) -> MessageView:
    return MessageView(
        id=row.id,
        run_id=row.run_id,
        position=row.position,
        guest_unit_id=row.guest_unit_id,
        person_id=row.person_id,
        phone_e164=row.phone_e164,
        state=MessageState(row.state),
        reason=RejectionReason(row.rejection_reason) if row.rejection_reason else None,
        provider_message_id=row.provider_message_id,
        error_code=row.error_code,
        error_title=row.error_title,
        attempt_count=row.attempt_count,
        sent_at=row.sent_at,
        delivered_at=row.delivered_at,
        read_at=row.read_at,
        failed_at=row.failed_at,
    )


RUN_MESSAGES = text(
    """
    SELECT COLUMNS FROM invite_message m
    WHERE m.run_id = :run AND m.position > :after
      AND (cardinality(CAST(:states AS text[])) = 0 OR m.state = ANY(CAST(:states AS text[])))
      AND (cardinality(CAST(:reasons AS text[])) = 0
           OR m.rejection_reason = ANY(CAST(:reasons AS text[])))
    ORDER BY m.position
    LIMIT :limit
    """.replace("COLUMNS", _VIEW_COLUMNS)
)


async def run_messages(
    session: AsyncSession,
    run_id: uuid.UUID,
    *,
    after_position: int,
    states: Sequence[MessageState],
    reasons: Sequence[RejectionReason],
    limit: int,
) -> list[MessageView]:
    """A page of the run's messages in audience order after `after_position` (keyset)."""
    rows = await session.execute(
        RUN_MESSAGES,
        {
            "run": run_id,
            "after": after_position,
            "states": [s.value for s in states],
            "reasons": [r.value for r in reasons],
            "limit": limit,
        },
    )
    return [_view(r) for r in rows]


# The latest invitation of each household: messages that went out (not blocked or cancelled)
# win over ones that did not, then the newest run wins.
EVENT_LATEST = text(
    """
    SELECT DISTINCT ON (m.guest_unit_id) COLUMNS FROM invite_message m
    WHERE m.event_id = :event AND m.workspace_id = :ws
      AND (CAST(:after AS uuid) IS NULL OR m.guest_unit_id > CAST(:after AS uuid))
    ORDER BY m.guest_unit_id, (m.state IN ('blocked', 'cancelled')), m.created_at DESC
    LIMIT :limit
    """.replace("COLUMNS", _VIEW_COLUMNS)
)


async def event_latest_messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    event_id: uuid.UUID,
    *,
    after_guest_unit: uuid.UUID | None,
    limit: int,
) -> list[MessageView]:
    """A page of each household's latest invitation for the event, by household id."""
    rows = await session.execute(
        EVENT_LATEST,
        {"event": event_id, "ws": workspace_id, "after": after_guest_unit, "limit": limit},
    )
    return [_view(r) for r in rows]
