"""The messaging limit's moving window in Postgres, and the workspace's sending settings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import LimitSource, MessageState
from dispatch_service.domain.messaging_limit import WINDOW, Allowance
from dispatch_service.persistence.state_sql import pending

# Meta's messaging limit belongs to the business portfolio and is shared by all its numbers
# (reference meta-2026-and-twilio §5.1): the window counts the unique recipients of every run
# whose sender belongs to a workspace of the same WABA (`workspace.waba_id`; a workspace whose
# WABA is not known counts its own sender's only). Per phone, its last send in the window; the
# window frees when the (used - limit + 1)th oldest of those leaves it. A message claimed but not
# yet marked `sending` (leased, still `queued`) counts as sent now: its slot is taken, and the
# claims of one portfolio take turns (PORTFOLIO_LOCK), so a second claim cannot hand the same
# room out again before the mark. (The state is written out, not bound: it must match
# ix_invite_message_leased's predicate even in a generic plan of the prepared statement.)
_QUEUED = pending([MessageState.QUEUED], "m.dispatch_state")
_PORTFOLIO_SENDERS = """
    SELECT CAST(:sender AS text)
    UNION
    SELECT other.sender_phone_number_id
    FROM workspace w JOIN workspace other ON other.waba_id = w.waba_id
    WHERE w.sender_phone_number_id = :sender
"""
WINDOW_USE = text(f"""
    WITH senders AS ({_PORTFOLIO_SENDERS}),
    recent AS (
      SELECT phone_e164, max(last) AS last FROM (
        SELECT m.phone_e164, m.sending_at AS last
        FROM invite_send_run r JOIN invite_message m ON m.run_id = r.id
        WHERE r.sender_phone_number_id IN (SELECT * FROM senders) AND m.sending_at IS NOT NULL
          AND m.sending_at > clock_timestamp() - make_interval(secs => :window)
        UNION ALL
        SELECT m.phone_e164, clock_timestamp()
        FROM invite_send_run r JOIN invite_message m ON m.run_id = r.id
        WHERE r.sender_phone_number_id IN (SELECT * FROM senders) AND {_QUEUED}
          AND m.lease_owner IS NOT NULL AND m.lease_expires_at > clock_timestamp()
      ) AS uses GROUP BY phone_e164)
    SELECT (SELECT count(*) FROM recent) AS used,
           (SELECT last + make_interval(secs => :window) FROM recent ORDER BY last
            OFFSET greatest((SELECT count(*) FROM recent) - :limit, 0) LIMIT 1) AS frees_at,
           (SELECT min(last) + make_interval(secs => :window) FROM recent) AS next_exit_at
""")
PORTFOLIO_LOCK = text("""
    SELECT pg_advisory_xact_lock(hashtextextended('messaging_limit:' || w.waba_id, 0))
    FROM (SELECT DISTINCT waba_id FROM workspace
          WHERE sender_phone_number_id = :sender AND waba_id IS NOT NULL ORDER BY waba_id) AS w
""")
"""Claims of one portfolio's senders take turns here (each sender's own claims already take
turns on its schedule row, locked before this): a transaction-scoped lock, taken in a statement
of its own, so the window read after it sees what the claim before it leased."""


async def lock_portfolio(session: AsyncSession, sender: str) -> None:
    """Wait for the other claims of the sender's portfolio (PORTFOLIO_LOCK) until this
    transaction ends: a claim takes it before it reads the window."""
    await session.execute(PORTFOLIO_LOCK, {"sender": sender})


async def allowance(session: AsyncSession, sender: str, limit: int | None) -> Allowance:
    """What the moving 24 h window of the sender's portfolio leaves of `limit` (no query when
    unlimited)."""
    if limit is None:
        return Allowance(limit=None, used=0, frees_at=None)
    row = (
        await session.execute(
            WINDOW_USE,
            {
                "sender": sender,
                "limit": limit,
                "window": WINDOW.total_seconds(),
            },
        )
    ).one()
    used = int(row.used)
    return Allowance(
        limit=limit,
        used=used,
        frees_at=row.frees_at if used >= limit else None,
        next_exit_at=row.next_exit_at,
    )


async def workspace_sending(
    session: AsyncSession, workspace_id: uuid.UUID
) -> tuple[str, int | None, str | None]:
    """The workspace's (sender, messaging limit, send window)."""
    row = (
        await session.execute(
            text(
                "SELECT sender_phone_number_id, messaging_limit, send_window FROM workspace"
                " WHERE id = :ws"
            ),
            {"ws": workspace_id},
        )
    ).one()
    return str(row.sender_phone_number_id), row.messaging_limit, row.send_window


async def set_workspace_sending(
    session: AsyncSession, workspace_id: uuid.UUID, limit: int | None, window: str | None
) -> None:
    """Record the workspace's messaging limit (an operator's word, as of now) and send window."""
    await session.execute(
        text(
            "UPDATE workspace SET messaging_limit = :limit, send_window = :window,"
            " messaging_limit_source = :source, messaging_limit_updated_at = now()"
            " WHERE id = :ws"
        ),
        {"ws": workspace_id, "limit": limit, "window": window, "source": LimitSource.OPERATOR},
    )


@dataclass(frozen=True)
class ProviderLimitChange:
    """A workspace whose messaging limit Meta's word changed."""

    workspace_id: uuid.UUID
    before: int | None
    after: int | None


RECORD_PROVIDER_LIMIT = text("""
    UPDATE workspace w SET messaging_limit = :limit, messaging_limit_source = :source,
      messaging_limit_updated_at = :at
    FROM workspace old
    WHERE old.id = w.id
      AND ((:waba <> '' AND w.waba_id = :waba)
           OR (:sender <> '' AND w.sender_phone_number_id = :sender))
      AND (w.messaging_limit_updated_at IS NULL OR w.messaging_limit_updated_at < :at)
    RETURNING w.id, old.messaging_limit AS before
""")


async def record_provider_limit(
    session: AsyncSession, waba_id: str, sender: str, limit: int | None, at: datetime
) -> list[ProviderLimitChange]:
    """Meta said at `at` that the portfolio of WABA `waba_id` (or of phone number `sender`) may
    reach `limit` unique recipients per 24 h (None: unlimited): every workspace of that account
    or number takes it, unless it heard something newer (an operator's setting or a later
    webhook). Returns the workspaces it changed."""
    rows = await session.execute(
        RECORD_PROVIDER_LIMIT,
        {
            "limit": limit,
            "source": LimitSource.PROVIDER,
            "at": at,
            "waba": waba_id,
            "sender": sender,
        },
    )
    return [ProviderLimitChange(r.id, r.before, limit) for r in rows]
