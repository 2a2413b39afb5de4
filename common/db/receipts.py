"""Settling webhook receipts: the one statement that records what became of a stored receipt.

Two writers use it. The ingestor settles what it forwarded (or flagged, or failed to forward),
and ApplyStatus settles the receipts a fresh forward names in the same transaction that applies
their updates (one commit instead of two per batch). Either way a receipt is settled only while
it is ``pending``, so a late or repeated settlement never overwrites an earlier one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to record on a receipt after a forwarding attempt."""

    receipt_id: uuid.UUID
    state: str  # pending (attempt failed), applied, flagged
    flag: str | None = None
    phone_number_id: str | None = None
    workspace_id: uuid.UUID | None = None
    error: str | None = None
    notes: str | None = None
    """JSON list of ``{path, kind, reason}`` (items not read or ignored); None keeps the stored."""
    unreadable: int = 0
    """How many items of the body could not be read (for the ingestor's metrics)."""
    ignored: Sequence[str] = ()
    """The change fields (or item kinds) ignored in the body (for the ingestor's metrics)."""


@dataclass(frozen=True, slots=True)
class Settled:
    """A receipt the statement settled: its new state and flag, and seconds from its being
    stored to now (the database clock)."""

    receipt_id: uuid.UUID
    state: str
    flag: str | None
    lag_seconds: float


# The receipts are found through the primary key, from an array the planner cannot see into
# (`ANY(ARRAY(SELECT ...))`, which it takes for a few elements), and "still pending" is spelled
# state NOT IN ('applied', 'flagged') (the same, by the CHECK on state):
# * with the set's rows alone (jsonb_to_recordset, which the planner takes for 100 rows) and
#   state = 'pending', the planner read ix_webhook_receipt_pending, which holds an entry for
#   every receipt settled since the last vacuum (11-17 ms a call for 36 receipts after a burst);
# * with `id = ANY(:ids)`, whose length it knows, it scanned the whole table whenever the
#   table's size made that look cheaper than one key lookup per receipt: twice per statement,
#   14.5 ms to settle 160 receipts among 13,000 (3.2-3.6 ms through the key), which is the
#   table of any install's first weeks (bench/webhook_ingest.py: 8.8 ms a call, a quarter of
#   Postgres's time per status at one status per POST).
# The skipping variant needs no lock order: SKIP LOCKED never waits.
_SETTLE = """
    WITH v AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS v(id uuid, state text, flag text, phone_number_id text, workspace_id uuid,
                 error text, notes text)
    ){free}
    UPDATE webhook_receipt AS r
    SET state = v.state, flag = v.flag,
        notes = COALESCE(CAST(v.notes AS jsonb), r.notes),
        phone_number_id = COALESCE(v.phone_number_id, r.phone_number_id),
        workspace_id = COALESCE(v.workspace_id, r.workspace_id),
        applied_at = CASE WHEN v.state = 'applied' THEN now() ELSE r.applied_at END,
        attempts = r.attempts + 1, last_error = v.error
    FROM v
    WHERE r.id = ANY(ARRAY(SELECT {source}.id FROM {source})) AND r.id = v.id
      AND r.state NOT IN ('applied', 'flagged')
    RETURNING r.id, r.state, r.flag, EXTRACT(EPOCH FROM (now() - r.received_at)) AS lag
"""
SETTLE = text(_SETTLE.format(free="", source="v"))
SETTLE_UNLOCKED = text(
    _SETTLE.format(
        # Receipts another transaction holds (a sweeper forwarding them) are left to it: waiting
        # would wait for that sweeper's own ApplyStatus call, which may wait for this one.
        free="""
    , free AS (
        SELECT r.id FROM webhook_receipt AS r
        WHERE r.id = ANY(ARRAY(SELECT v.id FROM v)) AND r.state NOT IN ('applied', 'flagged')
        FOR NO KEY UPDATE SKIP LOCKED
    )""",
        source="free",
    )
)


async def settle(
    db: AsyncConnection | AsyncSession,
    settlements: Sequence[Settlement],
    *,
    skip_locked: bool = False,
) -> list[Settled]:
    """Record each settlement on its receipt when that receipt is still pending (in the
    caller's transaction); `skip_locked` leaves receipts another transaction holds untouched.
    Returns the receipts settled."""
    if not settlements:
        return []
    rows = orjson.dumps(
        [
            {
                "id": s.receipt_id,
                "state": s.state,
                "flag": s.flag,
                "phone_number_id": s.phone_number_id,
                "workspace_id": s.workspace_id,
                "error": s.error,
                "notes": s.notes,
            }
            for s in settlements
        ]
    ).decode()
    result = await db.execute(SETTLE_UNLOCKED if skip_locked else SETTLE, {"rows": rows})
    return [Settled(row[0], row[1], row[2], float(row[3])) for row in result]
