"""Do-Not-Message entries an operator adds, removes and lists (every change audited).

An active entry blocks its phone in every event of the workspace: prechecks and the dispatcher
read active entries. An operator's entry applies to their own workspace (the scope rule is in
``domain/do_not_message.py``; entries are written by the one writer in
``persistence/do_not_message.py``). Phones are normalised with the workspace's default region,
so "+1 202 555 0123" and "(202) 555-0123" are the same entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import DoNotMessageEntry
from dispatch_service.domain.actors import WRITERS
from dispatch_service.domain.do_not_message import operator_entry
from dispatch_service.domain.paging import NOT_OUR_TOKEN, encode_page_token, page_request
from dispatch_service.domain.phones import normalise_phone
from dispatch_service.errors import FieldViolation, InvalidArgument, NotFound
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.do_not_message import (
    active_entry,
    add_entries,
    list_active_entries,
    remove_entry,
)
from dispatch_service.persistence.workspaces import get_workspace
from dispatch_service.use_cases.acting import READERS, acting

MAX_REASON = 500


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON:
        raise InvalidArgument(FieldViolation("reason", f"must be at most {MAX_REASON} characters"))


async def _phone_e164(session: AsyncSession, workspace_id: uuid.UUID, phone: str) -> str:
    workspace = await get_workspace(session, workspace_id)
    normalised = normalise_phone(phone, workspace.default_region)
    if normalised.e164 is None:
        description = "is required" if not phone.strip() else "is not a valid phone number"
        raise InvalidArgument(FieldViolation("phone", description))
    return normalised.e164


async def add_do_not_message(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, phone: str, reason: str
) -> tuple[DoNotMessageEntry, bool]:
    """Block a phone (source ``operator``); an already-blocked phone returns its entry as is."""
    _check_reason(reason)
    async with acting(sessions, actor_id, WRITERS, "add do-not-message entries") as (
        session,
        actor,
    ):
        e164 = await _phone_e164(session, actor.workspace_id, phone)
        request = operator_entry(actor.workspace_id, actor.member_id, e164, reason.strip())
        created = bool(await add_entries(session, [request]))
        entry = await active_entry(session, actor.workspace_id, e164)
        assert entry is not None  # added now, or the active entry that was already there
    return entry, created


async def remove_do_not_message(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, phone: str, reason: str
) -> DoNotMessageEntry:
    """Unblock a phone (NOT_FOUND when it is not blocked), audited as ``dnm.remove``."""
    _check_reason(reason)
    async with acting(sessions, actor_id, WRITERS, "remove do-not-message entries") as (
        session,
        actor,
    ):
        e164 = await _phone_e164(session, actor.workspace_id, phone)
        entry = await remove_entry(
            session,
            workspace_id=actor.workspace_id,
            phone_e164=e164,
            actor_id=actor.member_id,
            reason=reason.strip(),
        )
        if entry is None:
            raise NotFound(f"{e164} is not on the do-not-message list", reason="DNM_NOT_FOUND")
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="dnm.remove",
            subject_type="do_not_message_entry",
            subject_id=entry.id,
            details={"phone_e164": e164, "reason": reason.strip(), "added_by": entry.actor_id},
        )
    return entry


async def list_do_not_message(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    page_size: int,
    page_token: str,
    include_removed: bool = False,
) -> tuple[list[DoNotMessageEntry], str]:
    """A page of active entries, or of every entry with `include_removed` (oldest first), and the
    next page's token ("" at the end)."""
    page = page_request(page_size, page_token, key_length=2)
    after = None
    if page.after is not None:
        try:
            after = (datetime.fromisoformat(page.after[0]), uuid.UUID(page.after[1]))
        except (TypeError, ValueError):
            raise InvalidArgument(FieldViolation("page_token", NOT_OUR_TOKEN)) from None
    async with acting(sessions, actor_id, READERS, "list do-not-message entries") as (
        session,
        actor,
    ):
        entries = await list_active_entries(
            session, actor.workspace_id, after, page.size + 1, include_removed=include_removed
        )
    token = ""
    if len(entries) > page.size:
        entries = entries[: page.size]
        last = entries[-1]
        token = encode_page_token([last.created_at.isoformat(), str(last.id)])
    return entries, token
