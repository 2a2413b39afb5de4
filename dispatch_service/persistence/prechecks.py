"""Prechecks in Postgres: the facts eligibility needs, and storing a precheck with its candidates.

Candidates are written with COPY (100,000 rows in a few hundred milliseconds), inside the
caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from psycopg import AsyncConnection
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import Precheck, PrecheckCandidate, Template
from common.vocabulary import MessageState
from dispatch_service.domain.eligibility import Candidate
from dispatch_service.errors import NotFound

INVITED_STATES = (
    MessageState.QUEUED,
    MessageState.SENDING,
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.READ,
)
"""A message in one of these states means the phone is (being) invited: `already_invited`."""

_CANDIDATE_COLUMNS = (
    "precheck_id",
    "position",
    "guest_unit_id",
    "person_id",
    "display_name",
    "guest_unit_name",
    "phone_e164",
    "eligible",
    "rejection_reason",
)
_CANDIDATE_TYPES = ("uuid", "int4", "uuid", "uuid", "text", "text", "text", "bool", "text")


async def require_template(
    session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID
) -> None:
    """NotFound unless `template_id` is a template of `workspace_id`."""
    found = await session.scalar(
        select(Template.id).where(Template.id == template_id, Template.workspace_id == workspace_id)
    )
    if found is None:
        raise NotFound("no such template in this workspace", reason="TEMPLATE_NOT_FOUND")


async def do_not_message_phones(session: AsyncSession, workspace_id: uuid.UUID) -> frozenset[str]:
    """Every phone with an active do-not-message entry in the workspace (one indexed read; far
    cheaper than sending 100,000 audience phones to the database to compare)."""
    rows = await session.scalars(
        text(
            "SELECT phone_e164 FROM do_not_message_entry"
            " WHERE workspace_id = :ws AND removed_at IS NULL"
        ),
        {"ws": workspace_id},
    )
    return frozenset(rows)


async def invited_phones(session: AsyncSession, event_id: uuid.UUID) -> frozenset[str]:
    """Phones with an invitation for the event that did not fail, was not blocked or cancelled."""
    rows = await session.scalars(
        text(
            "SELECT DISTINCT phone_e164 FROM invite_message WHERE event_id = :event"
            " AND phone_e164 IS NOT NULL AND state = ANY(:states)"
        ),
        {"event": event_id, "states": [s.value for s in INVITED_STATES]},
    )
    return frozenset(rows)


@dataclass(frozen=True)
class NewPrecheck:
    """A precheck's header row."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    template_id: uuid.UUID
    actor_id: uuid.UUID
    audience_hash: str
    total_count: int
    eligible_count: int
    resend_phones: tuple[str, ...]
    expires_at: datetime


async def store_precheck(
    session: AsyncSession, precheck: NewPrecheck, candidates: Sequence[Candidate]
) -> None:
    """Insert the precheck and COPY its candidates (in the caller's transaction)."""
    session.add(
        Precheck(
            id=precheck.id,
            workspace_id=precheck.workspace_id,
            event_id=precheck.event_id,
            template_id=precheck.template_id,
            actor_id=precheck.actor_id,
            audience_hash=precheck.audience_hash,
            total_count=precheck.total_count,
            eligible_count=precheck.eligible_count,
            blocked_count=precheck.total_count - precheck.eligible_count,
            resend_phones=list(precheck.resend_phones),
            expires_at=precheck.expires_at,
        )
    )
    await session.flush()
    connection = await raw_connection(session)
    statement = (
        f"COPY precheck_candidate ({', '.join(_CANDIDATE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    )
    async with connection.cursor() as cursor, cursor.copy(statement) as copy:
        # Binary with declared types: no text formatting or parsing of 100,000 uuids.
        copy.set_types(list(_CANDIDATE_TYPES))
        for c in candidates:
            t = c.target
            await copy.write_row(
                (
                    precheck.id,
                    c.position,
                    t.guest_unit_id,
                    t.person_id,
                    t.display_name,
                    t.guest_unit_name,
                    t.phone_e164,
                    c.reason is None,
                    c.reason.value if c.reason else None,
                )
            )


async def raw_connection(session: AsyncSession) -> AsyncConnection[Any]:
    """The psycopg connection under the session's current transaction (for COPY)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return cast(AsyncConnection[Any], raw.driver_connection)


async def list_candidates(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    precheck_id: uuid.UUID,
    eligible: bool | None,
    after_position: int,
    limit: int,
) -> list[PrecheckCandidate]:
    """A precheck's candidates in audience order after `after_position` (NotFound for a precheck
    of another workspace, like one that does not exist)."""
    found = await session.scalar(
        select(Precheck.id).where(Precheck.id == precheck_id, Precheck.workspace_id == workspace_id)
    )
    if found is None:
        raise NotFound("no such precheck in this workspace", reason="PRECHECK_NOT_FOUND")
    statement = select(PrecheckCandidate).where(
        PrecheckCandidate.precheck_id == precheck_id, PrecheckCandidate.position > after_position
    )
    if eligible is not None:
        statement = statement.where(PrecheckCandidate.eligible.is_(eligible))
    rows = await session.scalars(statement.order_by(PrecheckCandidate.position).limit(limit))
    return list(rows)
