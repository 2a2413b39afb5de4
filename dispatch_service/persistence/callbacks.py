"""Callback endpoints: configuration, leases for the deliverer, and the delivery log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.persistence.changes import HEAD_SQL
from dispatch_service.read_models import EndpointState


@dataclass(frozen=True)
class Endpoint:
    """A workspace's receiver and where its delivery stands."""

    workspace_id: uuid.UUID
    url: str
    secret: str
    cursor: int
    attempts: int
    failing_since: datetime | None


UPSERT = text(f"""
    INSERT INTO callback_endpoint (workspace_id, url, secret, cursor)
    VALUES (:workspace, :url, :secret,
            ({HEAD_SQL}))
    ON CONFLICT (workspace_id) DO UPDATE
    SET url = excluded.url, secret = excluded.secret, attempts = 0, failing_since = NULL,
        next_attempt_at = now(), updated_at = now()
""")
DELETE = text("DELETE FROM callback_endpoint WHERE workspace_id = :workspace")
STATE = text("""
    SELECT url, cursor, attempts, failing_since, next_attempt_at, last_status, delivered_count,
           dead_lettered_count
    FROM callback_endpoint WHERE workspace_id = :workspace
""")
CLAIM = text("""
    UPDATE callback_endpoint e SET lease_until = now() + make_interval(secs => :lease)
    WHERE e.workspace_id IN (
      SELECT workspace_id FROM callback_endpoint
      WHERE next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
      ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING e.workspace_id, e.url, e.secret, e.cursor, e.attempts, e.failing_since
""")
IDLE = text("""
    UPDATE callback_endpoint SET lease_until = NULL,
      next_attempt_at = now() + make_interval(secs => :wait)
    WHERE workspace_id = :workspace
""")
DELIVERED = text("""
    UPDATE callback_endpoint SET cursor = :last, attempts = 0, failing_since = NULL,
      lease_until = NULL, next_attempt_at = now(), last_status = :status,
      delivered_count = delivered_count + :count, updated_at = now()
    WHERE workspace_id = :workspace AND cursor = :expected
""")
FAILED = text("""
    UPDATE callback_endpoint SET attempts = attempts + 1,
      failing_since = coalesce(failing_since, now()), lease_until = NULL,
      next_attempt_at = now() + make_interval(secs => :wait), last_status = :status,
      updated_at = now()
    WHERE workspace_id = :workspace
""")
DEAD_LETTERED = text("""
    UPDATE callback_endpoint SET cursor = :last, attempts = 0, failing_since = NULL,
      lease_until = NULL, next_attempt_at = now(), last_status = :status,
      dead_lettered_count = dead_lettered_count + :count, updated_at = now()
    WHERE workspace_id = :workspace AND cursor = :expected
""")
LOG = text("""
    INSERT INTO callback_attempt (workspace_id, first_seq, last_seq, outcome, status_code, error)
    VALUES (:workspace, :first, :last, :outcome, :code, :error)
""")
PRUNE_LOG = text("""
    DELETE FROM callback_attempt
    WHERE attempted_at < now() - make_interval(secs => :retention)
""")


async def set_endpoint(
    session: AsyncSession, workspace_id: uuid.UUID, url: str, secret: str
) -> None:
    """Configure (or replace) the workspace's receiver; a new one starts at the present."""
    await session.execute(UPSERT, {"workspace": workspace_id, "url": url, "secret": secret})


async def remove_endpoint(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Stop calling back (the delivery log goes with it)."""
    await session.execute(DELETE, {"workspace": workspace_id})


async def endpoint_state(session: AsyncSession, workspace_id: uuid.UUID) -> EndpointState | None:
    """The receiver's delivery state, or None when none is configured."""
    row = (await session.execute(STATE, {"workspace": workspace_id})).first()
    if row is None:
        return None
    return EndpointState(
        url=row.url,
        cursor=row.cursor,
        attempts=row.attempts,
        failing_since=row.failing_since,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        delivered_count=row.delivered_count,
        dead_lettered_count=row.dead_lettered_count,
    )


async def claim_due(session: AsyncSession, limit: int, lease_seconds: float) -> list[Endpoint]:
    """Lease up to `limit` endpoints that are due (one deliverer per endpoint at a time)."""
    async with session.begin():
        rows = await session.execute(CLAIM, {"limit": limit, "lease": lease_seconds})
        return [
            Endpoint(r.workspace_id, r.url, r.secret, r.cursor, r.attempts, r.failing_since)
            for r in rows
        ]


async def release_idle(session: AsyncSession, workspace_id: uuid.UUID, wait: float) -> None:
    """Nothing to send: look again after `wait` seconds."""
    async with session.begin():
        await session.execute(IDLE, {"workspace": workspace_id, "wait": wait})


async def record_delivered(
    session: AsyncSession, endpoint: Endpoint, first: int, last: int, count: int, code: int
) -> None:
    """The receiver accepted changes first..last: the cursor moves past them."""
    async with session.begin():
        params = {"workspace": endpoint.workspace_id, "first": first, "last": last}
        await session.execute(
            DELIVERED,
            {**params, "expected": endpoint.cursor, "status": str(code), "count": count},
        )
        await session.execute(LOG, {**params, "outcome": "delivered", "code": code, "error": ""})


async def record_failed(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    first: int,
    last: int,
    code: int | None,
    error: str,
    wait: float,
) -> None:
    """The POST failed: retry the same changes after `wait` seconds."""
    async with session.begin():
        status = str(code) if code is not None else error[:200]
        await session.execute(FAILED, {"workspace": workspace_id, "wait": wait, "status": status})
        await session.execute(
            LOG,
            {
                "workspace": workspace_id,
                "first": first,
                "last": last,
                "outcome": "failed",
                "code": code,
                "error": error[:500],
            },
        )


async def record_dead_lettered(
    session: AsyncSession, endpoint: Endpoint, first: int, last: int, count: int
) -> None:
    """The receiver failed for longer than the dead-letter time: these changes are given up on
    (logged with their range; they stay readable through ListChanges within the retention)."""
    async with session.begin():
        params = {"workspace": endpoint.workspace_id, "first": first, "last": last}
        await session.execute(
            DEAD_LETTERED,
            {**params, "expected": endpoint.cursor, "status": "dead_lettered", "count": count},
        )
        await session.execute(
            LOG, {**params, "outcome": "dead_lettered", "code": None, "error": ""}
        )


async def prune_log(session: AsyncSession, retention_seconds: float) -> None:
    """Forget delivery attempts older than the retention."""
    async with session.begin():
        await session.execute(PRUNE_LOG, {"retention": retention_seconds})
