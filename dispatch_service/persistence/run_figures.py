"""Everything a run's status shows beside the run row, read in one round trip.

GetRunStatus is polled by backends and the console while runs dispatch, on a Postgres busy with
sending, so its cost is round trips more than work: each of these reads is a small index scan
(two trigger-maintained projections, the partial index of held messages, the rate card, the
sender's schedule row), whatever the run's size. One statement returns them all, each as a JSON
array built by its own subquery:

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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.domain.pricing import RateCard
from dispatch_service.domain.runs import CountRow
from dispatch_service.persistence.pricing import RATES_SQL, card_of
from dispatch_service.persistence.rate_limit import OUTAGE_SQL, SenderOutage, outage_of
from dispatch_service.read_models import HeldCount

COUNTS_SQL = """
    SELECT state, reason, error_code, sum(count) AS n FROM invite_run_count
    WHERE run_id = :run GROUP BY state, reason, error_code HAVING sum(count) <> 0
"""
HELD_SQL = """
    SELECT hold_reason, count(*) AS n, min(next_attempt_at) AS first, max(next_attempt_at) AS last
    FROM invite_message
    WHERE run_id = :run AND state = :queued AND hold_reason IS NOT NULL
      AND next_attempt_at > clock_timestamp()
    GROUP BY hold_reason ORDER BY hold_reason
"""
BILLABLE_SQL = """
    SELECT prefix, category, sum(count) AS n FROM invite_run_billable
    WHERE run_id = :run GROUP BY prefix, category HAVING sum(count) <> 0 ORDER BY prefix, category
"""
RUN_FIGURES = text(f"""
    SELECT f.*, o.* FROM (SELECT
      (SELECT coalesce(json_agg(c), '[]') FROM ({COUNTS_SQL}) c) AS counts,
      (SELECT coalesce(json_agg(h), '[]') FROM ({HELD_SQL}) h) AS held,
      (SELECT coalesce(json_agg(b), '[]') FROM ({BILLABLE_SQL}) b) AS billable,
      (SELECT coalesce(json_agg(k), '[]') FROM ({RATES_SQL}) k) AS rates
    ) f LEFT JOIN LATERAL ({OUTAGE_SQL}) o ON true
""")


@dataclass(frozen=True)
class RunFigures:
    """A run's counts, holds, billable messages, its workspace's rate card and its sender's
    outage."""

    counts: list[CountRow]
    held: tuple[HeldCount, ...]
    billable: list[tuple[str, str, int]]
    """(phone prefix, pricing category, messages)"""
    card: RateCard
    outage: SenderOutage | None


async def run_figures(
    session: AsyncSession, workspace_id: uuid.UUID, run_id: uuid.UUID, outage_of_sender: str | None
) -> RunFigures:
    """The figures of `run_id` (see the module docstring); the outage of `outage_of_sender`
    when given (None: not asked)."""
    row = (
        await session.execute(
            RUN_FIGURES,
            {
                "run": run_id,
                "queued": MessageState.QUEUED.value,
                "workspace": workspace_id,
                "sender": outage_of_sender,
            },
        )
    ).one()
    return RunFigures(
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
