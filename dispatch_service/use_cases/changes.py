"""The change stream: a workspace's message and run state changes in commit order.

ListChanges pages through the log; WatchChanges follows it live. Both continue after a cursor
(at-least-once: a client that reconnects with the last cursor it processed misses nothing, and
recognises a change it saw before by its cursor). Any role may read; only the actor's workspace
is visible. The sequencer loop (:func:`maintain_change_log`) numbers committed changes and prunes
old ones; readers also number pending changes themselves, so the stream is live even when the
loop runs in another replica.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.outages import OutageLog
from dispatch_service.domain.changes import (
    ChangeFilter,
    ChangeKind,
    format_cursor,
    page_size,
    parse_cursor,
)
from dispatch_service.errors import FailedPrecondition
from dispatch_service.persistence import changes as log_
from dispatch_service.persistence.actors import load_actor
from dispatch_service.persistence.audience import require_event
from dispatch_service.persistence.runs import load_run
from dispatch_service.read_models import ChangeView

log = logging.getLogger(__name__)

WATCH_POLL_SECONDS = 0.2
WATCH_BATCH = 500


@dataclass(frozen=True)
class ChangeQuery:
    """A validated request for changes."""

    actor_id: uuid.UUID
    after_cursor: str = ""
    run_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    kinds: frozenset[ChangeKind] = frozenset()
    from_now: bool = False


@dataclass(frozen=True)
class ChangePage:
    """A page of changes and the cursor to continue after (the last change's, or further when
    the rest of the log held nothing for this filter)."""

    changes: list[ChangeView]
    next_cursor: str


async def _start(session: AsyncSession, query: ChangeQuery) -> tuple[ChangeFilter, int]:
    """The filter (checked against the actor's workspace) and the position to continue after."""
    after = parse_cursor(query.after_cursor)
    actor = await load_actor(session, query.actor_id)
    if query.run_id is not None:
        await load_run(session, actor.workspace_id, query.run_id)
    if query.event_id is not None:
        await require_event(session, actor.workspace_id, query.event_id)
    where = ChangeFilter(actor.workspace_id, query.run_id, query.event_id, query.kinds)
    if query.from_now and not query.after_cursor:
        return where, await log_.head_position(session)
    oldest = await log_.oldest_position(session)
    if after > 0 and oldest is not None and after < oldest - 1:
        raise FailedPrecondition(
            "the changes after this cursor were pruned (older than the retention); "
            "read the current state and continue from a new cursor",
            reason="CURSOR_EXPIRED",
        )
    return where, after


async def list_changes(
    sessions: async_sessionmaker[AsyncSession], query: ChangeQuery, requested_size: int
) -> ChangePage:
    """One page of changes after the query's cursor."""
    size = page_size(requested_size)
    async with sessions() as session:
        where, after = await _start(session, query)
        await session.commit()
        await log_.sequence_pending(session)
        async with session.begin():  # committed: a rollback would unprepare the statements
            changes, head = await log_.read_changes(session, where, after, size)
    last = changes[-1].position if len(changes) == size else max(head, after)
    return ChangePage(changes, format_cursor(last))


async def watch_changes(
    sessions: async_sessionmaker[AsyncSession],
    query: ChangeQuery,
    poll_seconds: float = WATCH_POLL_SECONDS,
) -> AsyncIterator[ChangeView]:
    """Every change after the query's cursor, then each new one as it commits (until the
    caller stops iterating)."""
    async with sessions() as session:
        where, after = await _start(session, query)
    while True:
        async with sessions() as session:
            await log_.sequence_pending(session)
            async with session.begin():  # committed: a rollback would unprepare the statements
                changes, head = await log_.read_changes(session, where, after, WATCH_BATCH)
        for change in changes:
            yield change
            after = change.position
        if len(changes) < WATCH_BATCH:
            after = max(after, head)
            await asyncio.sleep(poll_seconds)


async def maintain_change_log(
    sessions: async_sessionmaker[AsyncSession],
    *,
    interval_seconds: float,
    retention_seconds: float,
    prune_every: int = 300,
) -> None:
    """The background loop: number committed changes every interval, prune old ones now and
    then. Several replicas may run it; one numbers at a time."""
    rounds = 0
    outage = OutageLog(log, "change log maintenance")
    while True:
        try:
            async with sessions() as session:
                await log_.sequence_pending(session)
                if rounds % prune_every == 0:
                    pruned = await log_.prune(session, retention_seconds)
                    if pruned:
                        log.info("pruned %d changes older than the retention", pruned)
            outage.succeeded()
        except Exception as error:  # the loop outlives a database outage; the next round retries
            outage.failed(error)
        rounds += 1
        await asyncio.sleep(interval_seconds)
