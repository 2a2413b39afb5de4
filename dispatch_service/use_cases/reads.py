"""The reads: a run's status, its messages, a watch of its progress, an event's invitations.

Any role may read; everything is scoped to the actor's workspace (other workspaces' ids are
NOT_FOUND). Counts come from the trigger-maintained projection (invite_run_count), the listings
from invite_message itself; both are the same rows, so summary and listing always agree.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.domain.paging import (
    NOT_OUR_TOKEN,
    encode_page_token,
    page_request,
    single_key,
)
from dispatch_service.domain.pricing import CategoryCost, estimate
from dispatch_service.domain.runs import RunCounts, summarise_counts
from dispatch_service.domain.transitions import FINAL_RUN_STATES
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.actors import load_actor
from dispatch_service.persistence.audience import require_event
from dispatch_service.persistence.message_listings import event_latest_messages, run_messages
from dispatch_service.persistence.rate_limit import SenderOutage
from dispatch_service.persistence.run_figures import RunFigures, run_figures
from dispatch_service.persistence.runs import event_runs, load_run
from dispatch_service.read_models import HeldCount, MessageView, RunRecord

WATCH_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RunStatus:
    """A run and its counts."""

    run: RunRecord
    counts: RunCounts
    held: tuple[HeldCount, ...] = ()
    """Queued messages waiting on purpose (quiet hours), per reason."""
    costs: tuple[CategoryCost, ...] = ()
    """Billable messages per pricing category with their estimate (GetRunStatus only)."""
    currency: str = ""
    outage: SenderOutage | None = None
    """The sender's provider outage, while the run is active and there is one."""


async def _status(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, run_id: uuid.UUID
) -> tuple[RunStatus, RunFigures]:
    figures = await run_figures(sessions, actor_id, run_id)
    status = RunStatus(
        run=figures.run,
        counts=summarise_counts(
            figures.counts,
            None if figures.run.next_candidate_position is None else figures.run.total_count,
        ),
        held=figures.held,
        outage=figures.outage,
    )
    return status, figures


async def get_run_status(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, run_id: uuid.UUID
) -> RunStatus:
    """The run's state, counts and cost estimate (one statement, whatever the run's size)."""
    status, figures = await _status(sessions, actor_id, run_id)
    costs = estimate(figures.card, figures.billable)
    return replace(status, costs=tuple(costs), currency=figures.card.currency)


async def watch_run(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    run_id: uuid.UUID,
    poll_seconds: float = WATCH_POLL_SECONDS,
) -> AsyncIterator[RunStatus]:
    """The run's status now, then again whenever it changes, until the run is final (the
    membership is checked on every poll: a member removed meanwhile stops watching)."""
    last: RunStatus | None = None
    while True:
        status, _ = await _status(sessions, actor_id, run_id)
        if status != last:
            yield status
            last = status
        if status.run.state in FINAL_RUN_STATES:
            return
        await asyncio.sleep(poll_seconds)


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
    page_size: int,
    page_token: str,
) -> MessagePage:
    """A page of the run's messages in audience order, optionally filtered by state/reason."""
    page = page_request(page_size, page_token, key_length=1)
    after = single_key(page, int, -1)
    async with sessions() as session:
        actor = await load_actor(session, actor_id)
        await load_run(session, actor.workspace_id, run_id)
        rows = await run_messages(
            session,
            run_id,
            after_position=after,
            states=states,
            reasons=reasons,
            limit=page.size + 1,
        )
    more = len(rows) > page.size
    rows = rows[: page.size]
    return MessagePage(rows, encode_page_token([rows[-1].position]) if more else "")


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
    page_size: int,
    page_token: str,
) -> EventInvitations:
    """The event's runs (newest first) and each household's latest invitation across them:
    one that went out (not blocked or cancelled) wins over one that did not, then the newest."""
    page = page_request(page_size, page_token, key_length=1)
    after: uuid.UUID | None = None
    if page.after is not None:
        try:
            after = uuid.UUID(single_key(page, str, ""))
        except ValueError:
            raise InvalidArgument(FieldViolation("page_token", NOT_OUR_TOKEN)) from None
    async with sessions() as session:
        actor = await load_actor(session, actor_id)
        await require_event(session, actor.workspace_id, event_id)
        runs = await event_runs(session, actor.workspace_id, event_id)
        rows = await event_latest_messages(
            session, actor.workspace_id, event_id, after_guest_unit=after, limit=page.size + 1
        )
    more = len(rows) > page.size
    rows = rows[: page.size]
    return EventInvitations(
        runs=runs,
        latest=rows,
        next_page_token=encode_page_token([str(rows[-1].guest_unit_id)]) if more else "",
    )
