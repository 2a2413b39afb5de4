"""Do-not-message entries in Postgres: the one writer for every source, removal, and listings.

One active entry per (workspace, phone) and per (workspace, user id); removals are kept as
history. :func:`add_entries` is the only statement that inserts entries: the operator path, the
status path (preferences, stop keywords, opt-out statuses) and the dispatcher (opt-out errors on a
send) all call it, so the scope rule (``domain/do_not_message.py``) and the ``dnm.add`` audit entry
are the same for every source.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import DoNotMessageEntry
from common.vocabulary import DnmSource
from dispatch_service.domain.do_not_message import (
    SCOPE_OF,
    DnmScope,
    DoNotMessageRequest,
    provider_opt_out,
)

Entry = DoNotMessageEntry


def _completes(pair: str) -> str:
    """The condition under which entry `d` (a user-id-only one) gains the phone of `pair` (a row
    with workspace_id, phone and user_id): the same person, and no active entry of that phone."""
    return f"""d.workspace_id = {pair}.workspace_id AND d.provider_user_id = {pair}.user_id
          AND d.phone_e164 IS NULL AND d.removed_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM do_not_message_entry e
                          WHERE e.workspace_id = {pair}.workspace_id
                            AND e.phone_e164 = {pair}.phone AND e.removed_at IS NULL)"""


# The requests resolved to workspaces by the scope rule (a workspace id, or every workspace
# sending from a sender number, or one of them for a workspace that starts sending from it), a
# user-id-only request to the phone of the guest identity carrying that user id (when one does).
_CANDIDATES = """
    WITH request AS (
        SELECT v.workspace_id, v.pnid, nullif(v.phone, '') AS phone,
               nullif(v.user_id, '') AS user_id, v.source, v.reason, v.actor_id, v.context
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS v(workspace_id uuid, pnid text, phone text, user_id text, source text,
                 reason text, actor_id uuid, context jsonb)
    ), candidate AS (
        SELECT DISTINCT ON (w.id, coalesce(v.phone, gi.phone_e164), v.user_id)
               w.id AS workspace_id, coalesce(v.phone, gi.phone_e164) AS phone, v.user_id,
               v.source, v.reason, v.actor_id, v.context
        FROM request v
        JOIN workspace w
          ON w.id = v.workspace_id
          OR (v.workspace_id IS NULL AND w.sender_phone_number_id = v.pnid)
        LEFT JOIN guest_identity gi
          ON v.phone IS NULL AND gi.workspace_id = w.id AND gi.provider_user_id = v.user_id
        ORDER BY w.id, coalesce(v.phone, gi.phone_e164), v.user_id
    )"""
# First, a request naming a phone and a user id whose user-id-only entry exists gives that entry
# the phone (as COMPLETE_ENTRIES does once a guest identity pairs them): else the opt-out was
# dropped, and the phone stayed inviteable. A statement of its own, before the insert, so the
# insert sees the phone taken (one statement's two writes would both claim it).
COMPLETE_FROM_REQUESTS = text(f"""{_CANDIDATES}
    UPDATE do_not_message_entry d SET phone_e164 = c.phone
    FROM candidate c
    WHERE c.phone IS NOT NULL AND c.user_id IS NOT NULL AND {_completes("c")}
""")
# Then one statement for the whole batch: each candidate inserted where the person has no active
# entry yet (by phone or by user id), and each entry actually added audited as dnm.add.
ADD_ENTRIES = text(f"""{_CANDIDATES}, added AS (
        INSERT INTO do_not_message_entry
            (workspace_id, phone_e164, provider_user_id, reason, source, actor_id)
        SELECT c.workspace_id, c.phone, c.user_id, c.reason, c.source, c.actor_id
        FROM candidate c
        WHERE NOT EXISTS (
            SELECT 1 FROM do_not_message_entry d
            WHERE d.workspace_id = c.workspace_id AND d.removed_at IS NULL
              AND (d.phone_e164 = c.phone OR d.provider_user_id = c.user_id))
        ON CONFLICT DO NOTHING
        RETURNING id, workspace_id, phone_e164, provider_user_id, source, reason, actor_id
    ), audited AS (
        INSERT INTO audit_entry (workspace_id, actor_id, action, subject_type, subject_id,
                                 details)
        SELECT a.workspace_id, a.actor_id, 'dnm.add', 'do_not_message_entry', a.id::text,
               c.context || jsonb_strip_nulls(jsonb_build_object(
                   'phone_e164', a.phone_e164, 'user_id', a.provider_user_id,
                   'source', a.source, 'reason', a.reason))
        FROM added a JOIN candidate c
          ON c.workspace_id = a.workspace_id AND c.phone IS NOT DISTINCT FROM a.phone_e164
         AND c.user_id IS NOT DISTINCT FROM a.provider_user_id
    )
    SELECT id, workspace_id, phone_e164, provider_user_id, source FROM added
""")
# A person's user-id-only entries gain the phone once a guest identity pairs the two (unless the
# phone already has an active entry of its own).
COMPLETE_ENTRIES = text(f"""
    UPDATE do_not_message_entry d SET phone_e164 = v.phone
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(workspace_id uuid, phone text, user_id text)
    WHERE {_completes("v")}
    RETURNING d.id
""")


SENDER_OPT_OUTS = text("""
    SELECT DISTINCT ON (coalesce(d.phone_e164, ''), coalesce(d.provider_user_id, ''))
           coalesce(d.phone_e164, '') AS phone, coalesce(d.provider_user_id, '') AS user_id,
           d.source
    FROM do_not_message_entry d JOIN workspace w ON w.id = d.workspace_id
    WHERE w.sender_phone_number_id = :sender AND d.removed_at IS NULL
      AND d.source = ANY(CAST(:sources AS text[]))
    ORDER BY coalesce(d.phone_e164, ''), coalesce(d.provider_user_id, ''), d.created_at
""")


async def sender_opt_outs(
    session: AsyncSession, sender: str, workspace_id: uuid.UUID
) -> list[DoNotMessageRequest]:
    """The active opt-outs people reported to sender number `sender` (the sources the scope rule
    gives to every workspace sending from it), as requests for the one writer to apply to
    `workspace_id` alone, a workspace that starts sending from the number (never again to the
    others: an entry an operator removed there stays removed)."""
    sources = [
        source.value for source, scope in SCOPE_OF.items() if scope is DnmScope.SENDER_NUMBER
    ]
    rows = await session.execute(SENDER_OPT_OUTS, {"sender": sender, "sources": sources})
    return [
        replace(
            provider_opt_out(sender, row.phone, DnmSource(row.source), user_id=row.user_id),
            only_workspace_id=workspace_id,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class AddedEntry:
    """An entry :func:`add_entries` created."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    phone_e164: str | None
    provider_user_id: str | None
    source: DnmSource


def _row(request: DoNotMessageRequest) -> dict[str, object]:
    by_workspace = request.scope is DnmScope.WORKSPACE
    workspace = request.workspace_id if by_workspace else request.only_workspace_id
    return {
        "workspace_id": str(workspace) if workspace else None,
        "pnid": None if by_workspace else request.phone_number_id,
        "phone": request.phone_e164,
        "user_id": request.user_id,
        "source": request.source.value,
        "reason": request.reason,
        "actor_id": str(request.actor_id) if request.actor_id else None,
        "context": dict(request.context),
    }


async def add_entries(
    session: AsyncSession, requests: Sequence[DoNotMessageRequest]
) -> list[AddedEntry]:
    """Block each request's phone in the workspaces its scope names; idempotent (a phone with
    an active entry is left as it is). Returns the entries this call added, each audited."""
    if not requests:
        return []
    rows = json.dumps([_row(r) for r in requests], separators=(",", ":"))
    if any(r.phone_e164 and r.user_id for r in requests):
        await session.execute(COMPLETE_FROM_REQUESTS, {"rows": rows})
    result = await session.execute(ADD_ENTRIES, {"rows": rows})
    return [
        AddedEntry(r.id, r.workspace_id, r.phone_e164, r.provider_user_id, DnmSource(r.source))
        for r in result
    ]


async def complete_entries(
    session: AsyncSession, identities: Sequence[tuple[uuid.UUID, str, str]]
) -> int:
    """Give user-id-only entries the phone a guest identity now pairs with their user id
    ((workspace, phone, user id) triples); returns how many gained one."""
    if not identities:
        return 0
    rows = [{"workspace_id": str(w), "phone": p, "user_id": u} for w, p, u in identities]
    result = await session.execute(COMPLETE_ENTRIES, {"rows": json.dumps(rows)})
    return len(result.all())


async def active_entry(
    session: AsyncSession, workspace_id: uuid.UUID, phone_e164: str
) -> Entry | None:
    """The phone's active entry in the workspace, if it is blocked."""
    entry: Entry | None = await session.scalar(
        select(Entry)
        .where(
            Entry.workspace_id == workspace_id,
            Entry.phone_e164 == phone_e164,
            Entry.removed_at.is_(None),
        )
        .execution_options(populate_existing=True)
    )
    return entry


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
