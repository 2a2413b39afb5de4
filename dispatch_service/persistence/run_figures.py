"""A run's status, everything it shows, read in one statement.

GetRunStatus is polled by backends and the console while runs dispatch, on a machine busy with
sending, so its cost is round trips more than work: each read below is a small index scan (two
trigger-maintained projections, the partial index of held messages, the rate card, the sender's
schedule row), whatever the run's size, and on a busy machine every round trip is a wait to be
scheduled again. One statement checks the acting membership, reads the run of its workspace and
returns the rest, each as a JSON array built by its own subquery; being one statement it is one
snapshot, so it runs outside a transaction (no BEGIN and no ROLLBACK round trips), on the
pooled connection's own psycopg connection (common.db.engine.driver_autocommit): through a
session the same statement cost 636-714 µs of the replica's CPU per read against 281-286 µs,
and a replica's CPU is what a poll waits for on a busy machine. It reads:

* `counts`: the trigger-maintained projection (invite_run_count) per state, reason and code;
* `held`: queued messages waiting on purpose (quiet hours, the messaging limit, a 131049
  deferral), per reason, with when they are due;
* `billable`: billable messages per phone prefix and pricing category (for the cost estimate),
  from their trigger-maintained projection (invite_run_billable);
* `rates`: the workspace's rate card;
* the sender's provider outage (typed columns), asked only for an active run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import driver_autocommit
from common.vocabulary import MessageState, RejectionReason
from dispatch_service.domain.pricing import RateCard
from dispatch_service.domain.runs import ACTIVE_RUN_STATES, CountRow
from dispatch_service.errors import NotFound, Unauthenticated
from dispatch_service.persistence.actors import NO_ACTIVE_MEMBERSHIP
from dispatch_service.persistence.pricing import card_of, rates_sql
from dispatch_service.persistence.rate_limit import SenderOutage, outage_of, outage_sql
from dispatch_service.persistence.runs import RUN_FIELDS, RUN_NOT_FOUND, run_record
from dispatch_service.persistence.state_sql import pending, quoted
from dispatch_service.read_models import HeldCount, RunRecord

COUNTS_SQL = """
    SELECT state, reason, error_code, sum(count) AS n FROM invite_run_count
    WHERE run_id = %(run)s GROUP BY state, reason, error_code HAVING sum(count) <> 0
"""
# The state is spelled in the text, not bound: psycopg prepares a statement run often, and
# Postgres's generic plan for a prepared statement cannot use the partial index of held
# messages under a bound state (it read every message of the run instead: 10 ms at 100,000).
HELD_SQL = f"""
    SELECT hold_reason, count(*) AS n, min(next_attempt_at) AS first, max(next_attempt_at) AS last
    FROM invite_message
    WHERE run_id = %(run)s AND {pending([MessageState.QUEUED])} AND hold_reason IS NOT NULL
      AND next_attempt_at > clock_timestamp()
    GROUP BY hold_reason ORDER BY hold_reason
"""
BILLABLE_SQL = """
    SELECT prefix, category, sum(count) AS n FROM invite_run_billable
    WHERE run_id = %(run)s GROUP BY prefix, category HAVING sum(count) <> 0
    ORDER BY prefix, category
"""
# In the driver's parameter style (%(name)s): it runs on psycopg's connection.
RUN_STATUS = f"""
    WITH actor AS (SELECT workspace_id FROM membership WHERE id = %(actor)s AND active),
    run AS (
      SELECT {", ".join(f"r.{name}" for name in RUN_FIELDS)}
      FROM invite_send_run r JOIN actor USING (workspace_id) WHERE r.id = %(run)s
    )
    SELECT actor.workspace_id AS actor_workspace_id, run.*, f.*, o.*
    FROM (SELECT) one
    LEFT JOIN actor ON true
    LEFT JOIN run ON true
    LEFT JOIN LATERAL (SELECT
      (SELECT coalesce(json_agg(c), '[]') FROM ({COUNTS_SQL}) c) AS counts,
      (SELECT coalesce(json_agg(h), '[]') FROM ({HELD_SQL}) h) AS held,
      (SELECT coalesce(json_agg(b), '[]') FROM ({BILLABLE_SQL}) b) AS billable,
      (SELECT coalesce(json_agg(k), '[]') FROM ({rates_sql("run.workspace_id")}) k) AS rates
      WHERE run.id IS NOT NULL
    ) f ON true
    LEFT JOIN LATERAL ({outage_sql("run.sender_phone_number_id")}) o
      ON run.state IN ({quoted(ACTIVE_RUN_STATES)})
"""


@dataclass(frozen=True)
class RunFigures:
    """A run, its counts, holds, billable messages, its workspace's rate card and its sender's
    outage (while the run is active)."""

    run: RunRecord
    counts: list[CountRow]
    held: tuple[HeldCount, ...]
    billable: list[tuple[str, str, int]]
    """(phone prefix, pricing category, messages)"""
    card: RateCard
    outage: SenderOutage | None


async def run_figures(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, run_id: uuid.UUID
) -> RunFigures:
    """The figures of `run_id` (see the module docstring) for the membership `actor_id`.

    Raises Unauthenticated for an unknown or removed membership and NotFound for a run that is
    not in its workspace.
    """
    async with driver_autocommit(sessions) as connection:
        cursor = connection.cursor(row_factory=namedtuple_row)
        row: Any = await (
            await cursor.execute(RUN_STATUS, {"actor": actor_id, "run": run_id})
        ).fetchone()
    assert row is not None  # the statement selects FROM (SELECT): always one row
    if row.actor_workspace_id is None:
        raise Unauthenticated(NO_ACTIVE_MEMBERSHIP)
    if row.id is None:
        raise NotFound(RUN_NOT_FOUND, reason="RUN_NOT_FOUND")
    return RunFigures(
        run=run_record(row),
        counts=[
            CountRow(
                state=MessageState(c["state"]),
                reason=RejectionReason(c["reason"]) if c["reason"] else None,
                error_code=int(c["error_code"]) or None,
                count=int(c["n"]),
            )
            for c in row.counts
        ],
        held=tuple(
            HeldCount(
                h["hold_reason"],
                int(h["n"]),
                datetime.fromisoformat(h["first"]),
                datetime.fromisoformat(h["last"]),
            )
            for h in row.held
        ),
        billable=[(b["prefix"] or "", b["category"], int(b["n"])) for b in row.billable],
        card=card_of(row.rates),
        outage=outage_of(row),
    )
