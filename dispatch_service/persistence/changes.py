"""The change log: sequencing committed changes, reading them in order, pruning old ones.

Rows are written only by the triggers of migration 0012, in the transaction of the statement
that changed a message or run (one ``INSERT ... SELECT`` per statement). Their identity `id`
orders the changes of one message: a message's row lock is held from its update until commit,
so a later change to it takes its id after the earlier one committed.

`seq`, the cursor readers see, is given after commit by :func:`sequence_pending`, one sequencer
at a time (a transaction-scoped advisory lock): it numbers the committed, not yet numbered rows
densely in id order, after the highest number so far. A reader's snapshot therefore always
sees a prefix 1..n of the numbers (each numbering commits atomically, one after the other),
so a reader that continues after the last number it saw can never skip one. docs/changes.md
has the whole argument.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.changes import ChangeFilter
from dispatch_service.read_models import ChangeView

# Namespace of the sequencer's advisory lock (the first key of pg_try_advisory_xact_lock).
SEQUENCER_LOCK = (0x434847, 1)  # "CHG"

TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:a, :b)")
# How the numbering is planned, set for its transaction only:
#
# * Its scan of ix_change_log_pending must walk the index in order, never as a bitmap. Every
#   numbered row leaves a dead entry in that partial index until a vacuum; an index scan marks
#   each one it steps over as dead for all later scans (so they skip it without reading the
#   heap), a bitmap scan never does and reads every one again on every round, so each round
#   costs more than the last. The planner picks the bitmap (it expects few pending rows).
#   Measured, 700 rows a round: with the bitmap a round went from 8.1 to 14.9 ms over 140,000
#   numbered rows, with the index from 7.5 to 9.6 ms (the rest is the UPDATE itself).
# * It is planned afresh every round, never from a cached generic plan. psycopg prepares a
#   statement at its fifth execution, and after five more Postgres keeps a generic plan when it
#   costs no more than the custom ones. The sequencer runs from start-up, so that plan was made
#   for the empty log: a nested loop that ran the pending subquery (a sort of every pending row)
#   again for each row of change_log. Nothing replans it until the table is vacuumed or analysed
#   again (autovacuum is off in CI and on the development machine, and takes its time
#   anywhere). In bench/dispatch.py, whose seed analyses the empty log, the round after the
#   100,000-message run was created ran 18 s (more than 32 s in another run) on a core, held
#   the vacuum horizon meanwhile and left the next phase at 1.4-1.6 ms of Postgres CPU per
#   message sent instead of 0.7-0.8. Planning a round costs about half a millisecond.
# * Its estimates come from statistics that may predate most of the log: analysed while many
#   rows were pending, Postgres expects tens of thousands where a round finds a few hundred. So
#   each pending row is looked up by key (a nested loop; a hash join read the whole log to
#   number 10 rows, 594 pages at 20,000 rows), and the round is never compiled (JIT: such an
#   estimate crossed jit_above_cost, and compiling took 200-300 ms for a round of a few ms).
PLANNING = text(
    "SELECT set_config('enable_bitmapscan', 'off', true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true),"
    " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),"
    " set_config('jit', 'off', true)"
)
# The highest number given is kept in change_log_head, moved in the statement that numbers the
# round, never computed as max(seq): with statistics taken before any row was numbered, Postgres
# answered max(seq) by reading every numbered row, on every round and every read (migration 0023).
# Every statement that needs the head reads it this way.
HEAD_SQL = "SELECT top FROM change_log_head WHERE one"
SEQUENCE = text(f"""
    WITH pending AS (
      SELECT id, row_number() OVER (ORDER BY id) AS n
      FROM change_log WHERE seq IS NULL ORDER BY id LIMIT :limit),
    numbered AS (
      UPDATE change_log c SET seq = ({HEAD_SQL}) + pending.n
      FROM pending WHERE c.id = pending.id
      RETURNING 1)
    UPDATE change_log_head h SET top = h.top + n.count
    FROM (SELECT count(*) AS count FROM numbered) AS n
    WHERE h.one AND n.count > 0
    RETURNING n.count
""")
HEAD = text(HEAD_SQL)
OLDEST = text("SELECT min(seq) FROM change_log WHERE seq IS NOT NULL")
READ = text("""
    SELECT seq, kind, run_id, event_id, message_id, from_state, to_state, reason, error_code,
           changed_at
    FROM change_log
    WHERE workspace_id = :workspace AND seq IS NOT NULL AND seq > :after AND seq <= :head
      AND (CAST(:run AS uuid) IS NULL OR run_id = :run)
      AND (CAST(:event AS uuid) IS NULL OR event_id = :event)
      AND kind = ANY(CAST(:kinds AS text[]))
    ORDER BY seq
    LIMIT :limit
""")
PRUNE = text(f"""
    DELETE FROM change_log
    WHERE seq IS NOT NULL AND changed_at < now() - make_interval(secs => :retention)
      AND seq < ({HEAD_SQL})
""")


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


async def sequence_pending(session: AsyncSession, limit: int = 50_000) -> int | None:
    """Number committed, unnumbered changes (at most `limit`) and commit; how many, or None when
    another sequencer holds the lock (it will number them)."""
    async with session.begin():
        locked = await session.execute(TRY_LOCK, {"a": SEQUENCER_LOCK[0], "b": SEQUENCER_LOCK[1]})
        if not locked.scalar_one():
            return None
        await session.execute(PLANNING)
        numbered = (await session.execute(SEQUENCE, {"limit": limit})).scalar()
        return int(numbered or 0)


async def read_changes(
    session: AsyncSession, where: ChangeFilter, after: int, limit: int
) -> tuple[list[ChangeView], int]:
    """Up to `limit` numbered changes after `after` in order, and the head (the highest number
    this read could see: every change up to it is final, so a reader may continue after it)."""
    head = int((await session.execute(HEAD)).scalar_one())
    rows = await session.execute(
        READ,
        {
            "workspace": where.workspace_id,
            "after": after,
            "head": head,
            "run": where.run_id,
            "event": where.event_id,
            "kinds": where.kind_values(),
            "limit": limit,
        },
    )
    changes = [
        ChangeView(
            position=r.seq,
            kind=r.kind,
            run_id=r.run_id,
            event_id=r.event_id,
            message_id=r.message_id,
            from_state=r.from_state,
            to_state=r.to_state,
            reason=r.reason,
            error_code=r.error_code,
            changed_at=r.changed_at,
        )
        for r in rows
    ]
    return changes, head


async def oldest_position(session: AsyncSession) -> int | None:
    """The lowest number still kept (None when the log is empty)."""
    value: int | None = (await session.execute(OLDEST)).scalar_one()
    return int(value) if value is not None else None


async def head_position(session: AsyncSession) -> int:
    """The highest number given so far (0: none)."""
    return int((await session.execute(HEAD)).scalar_one())


async def prune(session: AsyncSession, retention_seconds: float) -> int:
    """Delete numbered changes older than the retention (the newest is always kept, so numbering
    continues after it); how many."""
    async with session.begin():
        result = await session.execute(PRUNE, {"retention": retention_seconds})
        return _rowcount(result)
