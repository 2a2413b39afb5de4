"""The reads: a run's status, its messages, a watch of its progress, an event's invitations.

Any role may read; everything is scoped to the actor's workspace (other workspaces' ids are
NOT_FOUND). Counts come from the trigger-maintained projection (invite_run_count), the listings
from invite_message itself; both are the same rows, so summary and listing always agree.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.domain.runs import FINAL_RUN_STATES, RunCounts, summarise_counts
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.actors import load_actor
from dispatch_service.persistence.audience import require_event
from dispatch_service.persistence.messages import (
    MessageView,
    event_latest_messages,
    run_messages,
)
from dispatch_service.persistence.runs import RunRecord, event_runs, load_run, run_counts

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
WATCH_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RunStatus:
    """A run and its counts."""

    run: RunRecord
    counts: RunCounts


async def _status(session: AsyncSession, workspace_id: uuid.UUID, run_id: uuid.UUID) -> RunStatus:
    run = await load_run(session, workspace_id, run_id)
    return RunStatus(run=run, counts=summarise_counts(await run_counts(session, run_id)))


async def get_run_status(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, run_id: uuid.UUID
) -> RunStatus:
    """The run's state and counts (two indexed reads, whatever the run's size)."""
    async with sessions() as session:
        actor = await load_actor(session, actor_id)
        return await _status(session, actor.workspace_id, run_id)


async def watch_run(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    run_id: uuid.UUID,
    poll_seconds: float = WATCH_POLL_SECONDS,
) -> AsyncIterator[RunStatus]:
    """The run's status now, then again whenever it changes, until the run is final."""
    async with sessions() as session:
        workspace_id = (await load_actor(session, actor_id)).workspace_id
    last: RunStatus | None = None
    while True:
        async with sessions() as session:
            status = await _status(session, workspace_id, run_id)
        if status != last:
            yield status
            last = status
        if status.run.state in FINAL_RUN_STATES:
            return
        await asyncio.sleep(poll_seconds)


def page_size(requested: int, field: str = "page_size") -> int:
    """The page size to use (default when 0); InvalidArgument outside 0..MAX_PAGE_SIZE."""
    if not 0 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(FieldViolation(field, f"must be 0..{MAX_PAGE_SIZE}"))
    return requested or DEFAULT_PAGE_SIZE


def encode_token(value: str) -> str:
    """An opaque page token for a keyset value."""
    return base64.urlsafe_b64encode(value.encode()).decode()


def decode_token(token: str) -> str:
    """The keyset value of a page token; InvalidArgument when it is not one of ours."""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument(FieldViolation("page_token", "is not a valid page token")) from None


@dataclass(frozen=True)
class MessagePage:
    """A page of messages and the token of the next one ("" on the last page)."""

    messages: list[MessageView]
    next_page_token: str


async def list_run_messages(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    states: Sequence[MessageState],
    reasons: Sequence[RejectionReason],
    size: int,
    token: str,
) -> MessagePage:
    """A page of the run's messages in audience order, optionally filtered by state/reason."""
    after = -1
    if token:
        raw = decode_token(token)
        if not raw.lstrip("-").isdigit():
            raise InvalidArgument(FieldViolation("page_token", "is not a valid page token"))
        after = int(raw)
    async with sessions() as session:
        actor = await load_actor(session, actor_id)
        await load_run(session, actor.workspace_id, run_id)
        rows = await run_messages(
            session, run_id, after_position=after, states=states, reasons=reasons, limit=size + 1
        )
    more = len(rows) > size
    rows = rows[:size]
    return MessagePage(rows, encode_token(str(rows[-1].position)) if more else "")


@dataclass(frozen=True)
class EventInvitations:
    """An event's runs and a page of each household's latest invitation."""

    runs: list[RunRecord]
    latest: list[MessageView]
    next_page_token: str


async def get_event_invitations(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    event_id: uuid.UUID,
    *,
    size: int,
    token: str,
) -> EventInvitations:
    """The event's runs (newest first) and each household's latest invitation across them:
    one that went out (not blocked or cancelled) wins over one that did not, then the newest."""
    after: uuid.UUID | None = None
    if token:
        try:
            after = uuid.UUID(decode_token(token))
        except ValueError:
            raise InvalidArgument(
                FieldViolation("page_token", "is not a valid page token")
            ) from None
    async with sessions() as session:
        actor = await load_actor(session, actor_id)
        await require_event(session, actor.workspace_id, event_id)
        runs = await event_runs(session, actor.workspace_id, event_id)
        rows = await event_latest_messages(
            session, actor.workspace_id, event_id, after_guest_unit=after, limit=size + 1
        )
    more = len(rows) > size
    rows = rows[:size]
    return EventInvitations(
        runs=runs,
        latest=rows,
        next_page_token=encode_token(str(rows[-1].guest_unit_id)) if more else "",
    )
