"""The dispatcher's reads and locks: active runs, claimable messages, the queue depth.

State changes are not made here: a claim's transitions (``started``, ``blocked_at_send``,
``claimed``) are statements of ``run_transitions`` and ``message_transitions``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState, RunState
from dispatch_service.domain.runs import ACTIVE_RUN_STATES
from dispatch_service.domain.transitions import MESSAGE_TRANSITIONS, MessageEvent
from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.state_sql import pending, quoted

_ACTIVE = quoted(ACTIVE_RUN_STATES)
_CLAIMABLE = pending(MESSAGE_TRANSITIONS[MessageEvent.CLAIMED].sources, column="m.dispatch_state")


@dataclass(frozen=True)
class ActiveRun:
    """A run the dispatcher may claim from, with what sending its messages needs."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    sender: str
    template_name: str
    language: str
    variable_names: tuple[str, ...]
    send_window: str | None = None
    """Quiet hours ("HH:MM-HH:MM" in each recipient's local time): the run's, else the
    workspace's; None: any time."""
    messaging_limit: int | None = None
    """The workspace's portfolio messaging limit (unique recipients per 24 h); None: none."""
    send_plan: Mapping[str, Any] = field(default_factory=dict)
    """The run's header, parameter format and buttons (domain/send_plan)."""
    time_zone: str = "UTC"
    """The event's time zone (IANA name): quiet hours for numbers whose region has no zone."""


ACTIVE_RUNS = text(
    f"""
    SELECT r.id, r.workspace_id, r.sender_phone_number_id AS sender, t.name, r.language,
           t.variables, coalesce(r.send_window, w.send_window) AS send_window,
           w.messaging_limit, r.send_plan, e.time_zone
    FROM invite_send_run r JOIN template t ON t.id = r.template_id
      JOIN workspace w ON w.id = r.workspace_id JOIN event e ON e.id = r.event_id
    WHERE r.state IN ({_ACTIVE})
    ORDER BY r.created_at
    """
)


async def active_runs(session: AsyncSession) -> list[ActiveRun]:
    """Runs in queued or dispatching state, oldest first."""
    rows = await session.execute(ACTIVE_RUNS)
    return [
        ActiveRun(
            id=r.id,
            workspace_id=r.workspace_id,
            sender=r.sender,
            template_name=r.name,
            language=r.language,
            variable_names=tuple(r.variables),
            send_window=r.send_window,
            messaging_limit=r.messaging_limit,
            send_plan=r.send_plan or {},
            time_zone=r.time_zone,
        )
        for r in rows
    ]


async def run_states(session: AsyncSession, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The current state of each of `run_ids`."""
    if not run_ids:
        return {}
    rows = await session.execute(
        text("SELECT id, state FROM invite_send_run WHERE id = ANY(:ids)"), {"ids": list(run_ids)}
    )
    return {r.id: r.state for r in rows}


async def lock_run_for_claim(session: AsyncSession, run_id: uuid.UUID) -> RunState | None:
    """Lock the run against CancelRun/ResumeRun/pause for this claim; start it if queued.

    Returns the run's state, or None when it no longer accepts claims.
    """
    state = await session.scalar(
        text("SELECT state FROM invite_send_run WHERE id = :run FOR NO KEY UPDATE"),
        {"run": run_id},
    )
    if state == RunState.QUEUED.value and await run_transitions.start(session, run_id):
        return RunState.DISPATCHING
    return RunState.DISPATCHING if state == RunState.DISPATCHING.value else None


@dataclass(frozen=True)
class ClaimCandidate:
    """A due queued message, locked by the claiming transaction."""

    id: uuid.UUID
    phone_e164: str
    variables: tuple[str, ...]
    attempt_count: int
    do_not_message: bool
    """The phone joined the workspace's do-not-message list since the precheck."""
    language: str | None = None
    """The template translation it is sent in (None: the run's)."""


CLAIMABLE = text(
    f"""
    SELECT m.id, m.phone_e164, m.variables, m.attempt_count, m.language,
           EXISTS (SELECT 1 FROM do_not_message_entry d
                   WHERE d.workspace_id = :ws AND d.phone_e164 = m.phone_e164
                     AND d.removed_at IS NULL) AS do_not_message
    FROM invite_message m
    WHERE m.run_id = :run AND {_CLAIMABLE}
      AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= clock_timestamp())
      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < clock_timestamp())
      AND NOT EXISTS (SELECT 1 FROM invite_send_run r WHERE r.id = m.run_id
                      AND r.deadline <= clock_timestamp())
    ORDER BY m.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF m SKIP LOCKED
    """
)


async def lock_claimable(
    session: AsyncSession, run_id: uuid.UUID, workspace_id: uuid.UUID, limit: int
) -> list[ClaimCandidate]:
    """Up to `limit` due queued messages of the run that no replica holds a live lease on,
    locked (others' locked rows are skipped),
    each with whether its phone is on the do-not-message list now."""
    rows = await session.execute(CLAIMABLE, {"run": run_id, "ws": workspace_id, "limit": limit})
    return [
        ClaimCandidate(
            r.id,
            r.phone_e164,
            tuple(str(v) for v in r.variables),
            r.attempt_count,
            bool(r.do_not_message),
            r.language,
        )
        for r in rows
    ]


async def lock_messages(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Lock messages in id order (the order ApplyStatus uses too, so the two never deadlock)."""
    if ids:
        await session.execute(
            text("SELECT id FROM invite_message WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
            {"ids": sorted(set(ids))},
        )


async def queue_depth(session: AsyncSession) -> int:
    """Queued messages of active runs, from the count projection."""
    value = await session.scalar(
        text(
            "SELECT coalesce(sum(c.count), 0) FROM invite_run_count c"
            " JOIN invite_send_run r ON r.id = c.run_id"
            f" WHERE r.state IN ({_ACTIVE}) AND c.state = :queued"
        ),
        {"queued": MessageState.QUEUED.value},
    )
    return int(value or 0)
