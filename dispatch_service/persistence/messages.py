"""Invite messages in Postgres: the dispatcher's claims and result writes, and the listings.

Every write here is conditional on the state the dispatcher left the message in (`sending`), so
a webhook that already moved a message (ApplyStatus, matched by provider id or callback data)
is never overwritten: a late send result can only fill a missing provider id or wa_id. Writes
are set-based (one statement per kind of result for a whole batch) and fire the run-counter
triggers like every other writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState, RejectionReason, RunState
from dispatch_service.persistence.audit_log import record_audit

# --- the dispatcher's view of runs --------------------------------------------------------------


@dataclass(frozen=True)
class ActiveRun:
    """A run the dispatcher may claim from, with what sending its messages needs."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    sender: str
    template_name: str
    language: str
    variable_names: tuple[str, ...]


ACTIVE_RUNS = text(
    """
    SELECT r.id, r.workspace_id, r.sender_phone_number_id AS sender, t.name, r.language,
           t.variables
    FROM invite_send_run r JOIN template t ON t.id = r.template_id
    WHERE r.state IN ('queued', 'dispatching')
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
    if state == RunState.QUEUED.value:
        await session.execute(
            text(
                "UPDATE invite_send_run SET state = 'dispatching', updated_at = now()"
                " WHERE id = :run"
            ),
            {"run": run_id},
        )
        return RunState.DISPATCHING
    return RunState.DISPATCHING if state == RunState.DISPATCHING.value else None


# --- claims ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimCandidate:
    """A due queued message, locked by the claiming transaction."""

    id: uuid.UUID
    phone_e164: str
    variables: tuple[str, ...]
    attempt_count: int
    do_not_message: bool
    """The phone joined the workspace's do-not-message list since the precheck."""


CLAIMABLE = text(
    """
    SELECT m.id, m.phone_e164, m.variables, m.attempt_count,
           EXISTS (SELECT 1 FROM do_not_message_entry d
                   WHERE d.workspace_id = :ws AND d.phone_e164 = m.phone_e164
                     AND d.removed_at IS NULL) AS do_not_message
    FROM invite_message m
    WHERE m.run_id = :run AND m.state = 'queued'
      AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= clock_timestamp())
    ORDER BY m.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF m SKIP LOCKED
    """
)


async def lock_claimable(
    session: AsyncSession, run_id: uuid.UUID, workspace_id: uuid.UUID, limit: int
) -> list[ClaimCandidate]:
    """Up to `limit` due queued messages of the run, locked (others' locked rows are skipped),
    each with whether its phone is on the do-not-message list now."""
    rows = await session.execute(CLAIMABLE, {"run": run_id, "ws": workspace_id, "limit": limit})
    return [
        ClaimCandidate(
            r.id,
            r.phone_e164,
            tuple(str(v) for v in r.variables),
            r.attempt_count,
            bool(r.do_not_message),
        )
        for r in rows
    ]


async def block_do_not_message(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Block claimed messages whose phone joined do-not-message since the precheck."""
    if ids:
        await session.execute(
            text(
                "UPDATE invite_message SET state = 'blocked', rejection_reason = 'do_not_message',"
                " next_attempt_at = NULL, updated_at = now() WHERE id = ANY(:ids)"
            ),
            {"ids": list(ids)},
        )


async def mark_sending(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    lease_expires: Sequence[datetime],
    owner: str,
) -> None:
    """The claimed messages go `sending` (one more attempt) before any provider call."""
    await session.execute(
        text(
            """
            UPDATE invite_message m SET state = 'sending', attempt_count = m.attempt_count + 1,
              sending_at = clock_timestamp(), lease_owner = :owner,
              lease_expires_at = v.lease, next_attempt_at = NULL, updated_at = now()
            FROM unnest(CAST(:ids AS uuid[]), CAST(:leases AS timestamptz[])) AS v(id, lease)
            WHERE m.id = v.id
            """
        ),
        {"ids": list(ids), "leases": list(lease_expires), "owner": owner},
    )


# --- results --------------------------------------------------------------------------------


async def lock_messages(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """Lock messages in id order (the order ApplyStatus uses too, so the two never deadlock)."""
    if ids:
        await session.execute(
            text("SELECT id FROM invite_message WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
            {"ids": sorted(set(ids))},
        )


@dataclass(frozen=True)
class AcceptedRow:
    """A provider-accepted message."""

    id: uuid.UUID
    provider_message_id: str
    wa_id: str | None


async def record_accepted(session: AsyncSession, rows: Sequence[AcceptedRow]) -> None:
    """`sending` -> `sent` (sent_at provisional: the `sent` webhook's timestamp replaces it).

    A message a webhook already advanced keeps its state; only a missing provider id / wa_id is
    filled in.
    """
    if not rows:
        return
    await session.execute(
        text(
            """
            UPDATE invite_message m SET
              state = CASE WHEN m.state = 'sending' THEN 'sent' ELSE m.state END,
              sent_at = CASE WHEN m.state IN ('sending', 'sent', 'delivered', 'read')
                             THEN coalesce(m.sent_at, clock_timestamp()) ELSE m.sent_at END,
              provider_message_id = coalesce(m.provider_message_id, v.wamid),
              wa_id = coalesce(m.wa_id, v.wa_id),
              error_code = CASE WHEN m.state = 'sending' THEN NULL ELSE m.error_code END,
              error_title = CASE WHEN m.state = 'sending' THEN NULL ELSE m.error_title END,
              error_details = CASE WHEN m.state = 'sending' THEN NULL ELSE m.error_details END,
              lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
            FROM unnest(CAST(:ids AS uuid[]), CAST(:wamids AS text[]), CAST(:wa_ids AS text[]))
              AS v(id, wamid, wa_id)
            WHERE m.id = v.id
            """
        ),
        {
            "ids": [r.id for r in rows],
            "wamids": [r.provider_message_id for r in rows],
            "wa_ids": [r.wa_id for r in rows],
        },
    )


@dataclass(frozen=True)
class ErrorRow:
    """A message with the provider's (or transport's) error."""

    id: uuid.UUID
    error_code: int | None
    error_title: str
    error_details: str


_ERROR_VALUES = """
    unnest(CAST(:ids AS uuid[]), CAST(:codes AS int[]), CAST(:titles AS text[]),
           CAST(:details AS text[]), CAST(:extra AS float8[])) AS v(id, code, title, details, extra)
"""
REQUEUE = text(
    """
    UPDATE invite_message m SET
      state = CASE WHEN r.state = 'cancelled' THEN 'cancelled' ELSE 'queued' END,
      next_attempt_at = clock_timestamp() + make_interval(secs => v.extra),
      error_code = v.code, error_title = v.title, error_details = v.details,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM invite_send_run r, ERROR_VALUES
    WHERE m.id = v.id AND m.state = 'sending' AND r.id = m.run_id
    """.replace("ERROR_VALUES", _ERROR_VALUES)
)
FAIL = text(
    """
    UPDATE invite_message m SET state = 'failed', rejection_reason = :reason,
      failed_at = clock_timestamp(), next_attempt_at = NULL,
      error_code = v.code, error_title = v.title, error_details = v.details,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM ERROR_VALUES
    WHERE m.id = v.id AND m.state = 'sending'
    """.replace("ERROR_VALUES", _ERROR_VALUES)
)
AMBIGUOUS = text(
    """
    UPDATE invite_message m SET error_code = v.code, error_title = v.title,
      error_details = v.details, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    FROM ERROR_VALUES
    WHERE m.id = v.id AND m.state = 'sending'
    """.replace("ERROR_VALUES", _ERROR_VALUES)
)


def _error_params(rows: Sequence[ErrorRow], extra: Sequence[float] | None = None) -> dict[str, Any]:
    return {
        "ids": [r.id for r in rows],
        "codes": [r.error_code for r in rows],
        "titles": [r.error_title for r in rows],
        "details": [r.error_details for r in rows],
        "extra": list(extra) if extra is not None else [0.0] * len(rows),
    }


async def record_requeued(
    session: AsyncSession, rows: Sequence[ErrorRow], delays: Sequence[float]
) -> None:
    """Back to `queued` (`cancelled` if the run was cancelled), due after each row's delay in
    seconds; the error is kept for display."""
    if rows:
        await session.execute(REQUEUE, _error_params(rows, delays))


async def record_failed(
    session: AsyncSession, rows: Sequence[ErrorRow], reason: RejectionReason
) -> None:
    """`sending` -> `failed` with the reason and the provider's code, title and details."""
    if rows:
        await session.execute(FAIL, {**_error_params(rows), "reason": reason.value})


async def record_halted(session: AsyncSession, rows: Sequence[ErrorRow]) -> None:
    """Back to `queued` (not sent, due at once after a resume) with the error for display."""
    await record_requeued(session, rows, [0.0] * len(rows))


async def record_ambiguous(session: AsyncSession, rows: Sequence[ErrorRow]) -> None:
    """Stays `sending` (never re-sent); the lease ends so the reconciler may fail it later."""
    if rows:
        await session.execute(AMBIGUOUS, _error_params(rows))


async def release_unsent(session: AsyncSession, ids: Sequence[uuid.UUID], owner: str) -> None:
    """Claimed messages this replica never called the provider for: back to `queued` (or
    `cancelled` when their run was cancelled meanwhile), and the attempt is given back."""
    if not ids:
        return
    await session.execute(
        text(
            """
            UPDATE invite_message m SET
              state = CASE WHEN r.state = 'cancelled' THEN 'cancelled' ELSE 'queued' END,
              attempt_count = greatest(m.attempt_count - 1, 0), sending_at = NULL,
              lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
            FROM invite_send_run r
            WHERE m.id = ANY(:ids) AND m.state = 'sending' AND m.lease_owner = :owner
              AND r.id = m.run_id
            """
        ),
        {"ids": list(ids), "owner": owner},
    )


async def pause_run(session: AsyncSession, run_id: uuid.UUID, reason: str) -> bool:
    """Pause an active run with `reason`; False when it was not active any more."""
    result = await session.execute(
        text(
            "UPDATE invite_send_run SET state = 'paused', pause_reason = :reason,"
            " updated_at = now() WHERE id = :run AND state IN ('queued', 'dispatching')"
        ),
        {"run": run_id, "reason": reason},
    )
    return cast(CursorResult[Any], result).rowcount > 0


@dataclass(frozen=True)
class OptOutRow:
    """A recipient who stopped marketing messages (131050) on a send."""

    workspace_id: uuid.UUID
    phone_e164: str
    message_id: uuid.UUID
    run_id: uuid.UUID


async def add_do_not_message(session: AsyncSession, rows: Sequence[OptOutRow]) -> int:
    """Add each phone to its workspace's do-not-message list (source provider_error_131050),
    auditing every entry actually added (dnm.add). Returns how many were added."""
    added = 0
    for row in rows:
        entry = await session.scalar(
            text(
                """
                INSERT INTO do_not_message_entry (workspace_id, phone_e164, reason, source)
                VALUES (:ws, :phone, :reason, 'provider_error_131050')
                ON CONFLICT (workspace_id, phone_e164) WHERE removed_at IS NULL DO NOTHING
                RETURNING id
                """
            ),
            {
                "ws": row.workspace_id,
                "phone": row.phone_e164,
                "reason": "send failed with 131050: the user stopped marketing messages",
            },
        )
        if entry is None:
            continue
        added += 1
        record_audit(
            session,
            workspace_id=row.workspace_id,
            actor_id=None,
            action="dnm.add",
            subject_type="do_not_message_entry",
            subject_id=entry,
            details={
                "phone_e164": row.phone_e164,
                "source": "provider_error_131050",
                "message_id": row.message_id,
                "run_id": row.run_id,
            },
        )
    return added


# --- reconciliation -------------------------------------------------------------------------


async def fail_unknown_outcomes(
    session: AsyncSession, window_seconds: float
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Messages `sending` for longer than the window and no longer leased become failed
    (outcome_unknown). Returns (message id, run id) of each."""
    rows = await session.execute(
        text(
            """
            WITH due AS (
              SELECT id FROM invite_message
              WHERE state = 'sending'
                AND sending_at < clock_timestamp() - make_interval(secs => :window)
                AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp())
              ORDER BY id
              FOR UPDATE SKIP LOCKED)
            UPDATE invite_message m SET state = 'failed', rejection_reason = 'outcome_unknown',
              failed_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,
              updated_at = now()
            FROM due WHERE m.id = due.id
            RETURNING m.id, m.run_id
            """
        ),
        {"window": window_seconds},
    )
    return [(r.id, r.run_id) for r in rows]


async def cancel_stragglers(session: AsyncSession) -> int:
    """Queued messages of runs cancelled in the last hour become cancelled (a result written
    while the run was being cancelled may have queued one again)."""
    result = await session.execute(
        text(
            """
            UPDATE invite_message m SET state = 'cancelled', updated_at = now()
            FROM invite_send_run r
            WHERE r.state = 'cancelled' AND r.finished_at > now() - interval '1 hour'
              AND m.run_id = r.id AND m.state = 'queued'
            """
        )
    )
    return cast(CursorResult[Any], result).rowcount


async def complete_finished_runs(session: AsyncSession) -> list[uuid.UUID]:
    """Active runs with no message queued or sending become completed."""
    rows = await session.execute(
        text(
            """
            UPDATE invite_send_run r SET state = 'completed', finished_at = now(),
              updated_at = now()
            WHERE r.state IN ('queued', 'dispatching')
              AND NOT EXISTS (SELECT 1 FROM invite_message m
                              WHERE m.run_id = r.id AND m.state IN ('queued', 'sending'))
            RETURNING r.id
            """
        ),
    )
    return [r.id for r in rows]


async def queue_depth(session: AsyncSession) -> int:
    """Queued messages of active runs, from the count projection."""
    value = await session.scalar(
        text(
            "SELECT coalesce(sum(c.count), 0) FROM invite_run_count c"
            " JOIN invite_send_run r ON r.id = c.run_id"
            " WHERE r.state IN ('queued', 'dispatching') AND c.state = :queued"
        ),
        {"queued": MessageState.QUEUED.value},
    )
    return int(value or 0)


# --- listings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageView:
    """One message as the listings show it."""

    id: uuid.UUID
    run_id: uuid.UUID
    position: int
    guest_unit_id: uuid.UUID
    person_id: uuid.UUID | None
    phone_e164: str | None
    state: MessageState
    reason: RejectionReason | None
    provider_message_id: str | None
    error_code: int | None
    error_title: str | None
    attempt_count: int
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None


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


# --- faults branch: new transitions ---
#
# A claim no longer makes a message `sending`: it only leases the `queued` row to the claiming
# replica until shortly after its slot. The replica marks it `sending` (the at-most-once point)
# just before it writes the request; a replica killed before that leaves the row `queued`, and
# the next claim takes it again once the lease has run out.

CLAIMABLE_UNLEASED = text(
    """
    SELECT m.id, m.phone_e164, m.variables, m.attempt_count,
           EXISTS (SELECT 1 FROM do_not_message_entry d
                   WHERE d.workspace_id = :ws AND d.phone_e164 = m.phone_e164
                     AND d.removed_at IS NULL) AS do_not_message
    FROM invite_message m
    WHERE m.run_id = :run AND m.state = 'queued'
      AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= clock_timestamp())
      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < clock_timestamp())
    ORDER BY m.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF m SKIP LOCKED
    """
)


async def lock_claimable_unleased(
    session: AsyncSession, run_id: uuid.UUID, workspace_id: uuid.UUID, limit: int
) -> list[ClaimCandidate]:
    """Claim read (no transition): up to `limit` due `queued` messages of the run that no
    replica holds a live lease on, locked, each with whether its phone is on do-not-message."""
    rows = await session.execute(
        CLAIMABLE_UNLEASED, {"run": run_id, "ws": workspace_id, "limit": limit}
    )
    return [
        ClaimCandidate(
            r.id,
            r.phone_e164,
            tuple(str(v) for v in r.variables),
            r.attempt_count,
            bool(r.do_not_message),
        )
        for r in rows
    ]


async def lease_claimed(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    lease_expires: Sequence[datetime],
    owner: str,
) -> None:
    """Transition `queued` -> `queued` (leased): the claimed messages are held by `owner` until
    their lease ends; nothing is attempted yet and the state does not change."""
    await session.execute(
        text(
            """
            UPDATE invite_message m SET lease_owner = :owner, lease_expires_at = v.lease,
              updated_at = now()
            FROM unnest(CAST(:ids AS uuid[]), CAST(:leases AS timestamptz[])) AS v(id, lease)
            WHERE m.id = v.id AND m.state = 'queued'
            """
        ),
        {"ids": list(ids), "leases": list(lease_expires), "owner": owner},
    )


async def mark_attempting(
    session: AsyncSession, ids: Sequence[uuid.UUID], owner: str, lease_seconds: float
) -> set[uuid.UUID]:
    """Transition `queued` (leased by `owner`, run `dispatching`) -> `sending`: the at-most-once
    point, taken just before the request is written (attempt + 1, `sending_at`, a lease for the
    call). Returns the ids that moved; the others were cancelled, taken over after their lease
    ran out, or their run stopped, and must not be sent."""
    if not ids:
        return set()
    rows = await session.execute(
        text(
            """
            UPDATE invite_message m SET state = 'sending', attempt_count = m.attempt_count + 1,
              sending_at = clock_timestamp(),
              lease_expires_at = clock_timestamp() + make_interval(secs => :lease),
              next_attempt_at = NULL, updated_at = now()
            FROM invite_send_run r
            WHERE m.id = ANY(:ids) AND m.state = 'queued' AND m.lease_owner = :owner
              AND r.id = m.run_id AND r.state = 'dispatching'
            RETURNING m.id
            """
        ),
        {"ids": list(ids), "owner": owner, "lease": lease_seconds},
    )
    return {r.id for r in rows}


async def give_back_unsent(session: AsyncSession, ids: Sequence[uuid.UUID], owner: str) -> None:
    """Transition `queued` (leased by `owner`) or `sending` (leased by `owner`, request never
    written) -> `queued` (`cancelled` when the run was cancelled meanwhile), lease cleared; a
    `sending` message gets its attempt back."""
    if not ids:
        return
    await session.execute(
        text(
            """
            UPDATE invite_message m SET
              state = CASE WHEN r.state = 'cancelled' THEN 'cancelled' ELSE 'queued' END,
              attempt_count = CASE WHEN m.state = 'sending'
                                   THEN greatest(m.attempt_count - 1, 0)
                                   ELSE m.attempt_count END,
              sending_at = CASE WHEN m.state = 'sending' THEN NULL ELSE m.sending_at END,
              lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
            FROM invite_send_run r
            WHERE m.id = ANY(:ids) AND m.state IN ('queued', 'sending')
              AND m.lease_owner = :owner AND r.id = m.run_id
            """
        ),
        {"ids": list(ids), "owner": owner},
    )
