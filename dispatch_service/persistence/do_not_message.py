"""Do-not-message entries in Postgres (one active entry per phone; removals kept as history)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import DoNotMessageEntry
from common.vocabulary import DnmSource

Entry = DoNotMessageEntry


async def add_entry(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    phone_e164: str,
    reason: str,
    source: DnmSource,
    actor_id: uuid.UUID | None,
) -> tuple[Entry, bool]:
    """The active entry for the phone and whether this call created it (race-safe)."""
    entry_id = await session.scalar(
        insert(Entry)
        .values(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            phone_e164=phone_e164,
            reason=reason,
            source=source.value,
            actor_id=actor_id,
        )
        .on_conflict_do_nothing(
            index_elements=["workspace_id", "phone_e164"],
            index_where=text("removed_at IS NULL"),
        )
        .returning(Entry.id)
    )
    created = entry_id is not None
    entry = await session.scalar(
        select(Entry).where(
            Entry.workspace_id == workspace_id,
            Entry.phone_e164 == phone_e164,
            Entry.removed_at.is_(None),
        )
    )
    assert entry is not None  # inserted now, or the conflicting active entry
    return entry, created


async def remove_entry(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    phone_e164: str,
    actor_id: uuid.UUID,
    reason: str,
) -> Entry | None:
    """Close the phone's active entry; None when the phone is not blocked."""
    entry_id = await session.scalar(
        update(Entry)
        .where(
            Entry.workspace_id == workspace_id,
            Entry.phone_e164 == phone_e164,
            Entry.removed_at.is_(None),
        )
        .values(removed_at=datetime.now(UTC), removed_by=actor_id, removal_reason=reason)
        .returning(Entry.id)
    )
    return None if entry_id is None else await session.get(Entry, entry_id, populate_existing=True)


async def list_active_entries(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    include_removed: bool = False,
) -> list[Entry]:
    """Active entries (every entry with `include_removed`) oldest first, after the
    (created_at, id) key of the previous page."""
    statement = select(Entry).where(Entry.workspace_id == workspace_id)
    if not include_removed:
        statement = statement.where(Entry.removed_at.is_(None))
    if after is not None:
        created_at, entry_id = after
        statement = statement.where(
            or_(
                Entry.created_at > created_at,
                and_(Entry.created_at == created_at, Entry.id > entry_id),
            )
        )
    entries = await session.scalars(statement.order_by(Entry.created_at, Entry.id).limit(limit))
    return list(entries)
