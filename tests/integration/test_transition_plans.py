"""The send path's UPDATEs keep their plans when the statistics are older than the run.

Statistics taken while next to nothing was queued (a fresh table, or a big one between runs:
autovacuum analyses after a tenth of it changed) made every queued message look rare. The
statements that find their messages by id then read the state indexes instead, every queued
message of every run per claim or give back, and the reconciler's statements started from the
queued messages instead of the few runs concerned (dispatch_service/persistence/
message_transitions.py, `_state_in`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import HoldReason
from dispatch_service.domain.transitions import MessageEvent as E
from dispatch_service.persistence import (
    claims,
    messaging_limit,
    run_figures,
    run_transitions,
    status,
)
from dispatch_service.persistence import message_transitions as mt
from tests.integration.dispatch_support import precheck_and_start, seed_world

OWNER = "replica-a"
QUEUED_AFTER_ANALYZE = 20_000
STATE_INDEXES = (
    "ix_invite_message_claimable",
    "ix_invite_message_leased",
    "ix_invite_message_held",
    "ix_invite_message_unresolved_sending",
)


def _explain(
    conn: psycopg.Connection[Any], statement: TextClause | str, params: dict[str, Any]
) -> str:
    sql = statement if isinstance(statement, str) else statement.text
    for name in sorted(params, key=len, reverse=True):
        sql = sql.replace(f":{name}", f"%({name})s")
    return "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", params))


@pytest.fixture
async def stale(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    """Statistics taken over 50,000 sent messages, then a run of 20,000 queued ones: 150 of
    their ids."""
    world = seed_world(database_url, ["+14155550101"])
    run = (await precheck_and_start(sessions, world)).run
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO invite_message (run_id, workspace_id, event_id, position,"
            " guest_unit_id, state, provider_message_id, sent_at)"
            " SELECT m.run_id, m.workspace_id, m.event_id, 100000 + i, m.guest_unit_id, 'sent',"
            " 'wamid.' || i, now() FROM (SELECT * FROM invite_message LIMIT 1) m,"
            " generate_series(1, 50000) AS i"
        )
        conn.execute("ANALYZE")
        conn.execute(
            "INSERT INTO invite_message (run_id, workspace_id, event_id, position,"
            " guest_unit_id, state, lease_owner)"
            " SELECT m.run_id, m.workspace_id, m.event_id, 1000 + i, m.guest_unit_id, 'queued',"
            " %(owner)s FROM (SELECT * FROM invite_message WHERE run_id = %(run)s LIMIT 1) m,"
            " generate_series(1, %(n)s) AS i",
            {"owner": OWNER, "run": run.id, "n": QUEUED_AFTER_ANALYZE},
        )
        return [
            r[0]
            for r in conn.execute("SELECT id FROM invite_message WHERE state = 'queued' LIMIT 150")
        ]


def _by_id() -> list[tuple[str, TextClause | str, dict[str, Any]]]:
    leases = [datetime(2030, 1, 1, tzinfo=UTC)]
    errors = {
        "codes": [131000],
        "titles": ["t"],
        "details": ["d"],
        "extra": [1.0],
        "leases": leases,
        "owner": OWNER,
    }
    return [
        (
            "lease",
            mt.LEASE,
            {"rows": lambda ids: mt.lease_rows(ids, leases * len(ids)), "owner": OWNER},
        ),
        ("mark", mt.MARK_ATTEMPTING, {"owner": OWNER, "extension": timedelta(seconds=30)}),
        ("hold", mt.HOLD, {"untils": leases, "reason": HoldReason.QUIET_HOURS.value}),
        ("requeue", mt.REQUEUE[E.TRANSIENT_ERROR], errors),
        ("fail", mt.FAIL[E.TERMINAL_ERROR], errors),
        ("ambiguous", mt.AMBIGUOUS, errors),
        (
            "give back",
            mt.GIVE_BACK,
            {"rows": lambda ids: mt.lease_rows(ids, leases * len(ids)), "owner": OWNER},
        ),
    ]


async def test_the_transitions_by_id_read_the_primary_key_whatever_the_statistics_say(
    database_url: str, stale: list[Any]
) -> None:
    ids = stale
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, statement, params in _by_id():
            values = {
                k: v(ids) if callable(v) else v * len(ids) if isinstance(v, list) else v
                for k, v in params.items()
            }
            plan = _explain(conn, statement, {"ids": ids, **values})
            assert "pk_invite_message" in plan, (name, plan)
            assert "Seq Scan on invite_message" not in plan, (name, plan)
            assert not [index for index in STATE_INDEXES if index in plan], (name, plan)


async def test_the_reconciler_reads_the_messages_of_the_runs_concerned_only(
    database_url: str, stale: list[Any]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        statements: list[tuple[str, TextClause, dict[str, Any]]] = [
            ("cancel stragglers", mt.CANCEL_STRAGGLERS, {"limit": mt.CANCEL_BATCH}),
            ("expire past deadline", mt.EXPIRE_PAST_DEADLINE, {"now": None}),
        ]
        for name, statement, params in statements:
            plan = _explain(conn, statement, params)
            assert "CTE Scan on runs" in plan, (name, plan)
            # each run's own messages, through its index
            assert "(run_id = runs.id)" in plan, (name, plan)
            assert "Seq Scan on invite_message" not in plan, (name, plan)


async def test_a_runs_completion_probes_its_pending_messages_through_their_partial_indexes(
    database_url: str, stale: list[Any]
) -> None:
    """No index covers (run_id, state) for every state (migration 0019): the completion test
    reads the queued and the sending messages of the run from their own partial indexes, never
    the run's 70,000 messages."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE invite_message")
        run = conn.execute("SELECT run_id FROM invite_message LIMIT 1").fetchone()
        assert run is not None
        for params in ({"run": run[0]}, {"run": None}):
            plan = _explain(conn, run_transitions.COMPLETE, params)
            assert "ix_invite_message_claimable" in plan, plan
            assert "ix_invite_message_unresolved_sending" in plan, plan
            assert "uq_invite_message_run_id_position" not in plan, plan
            assert "Seq Scan on invite_message" not in plan, plan


async def test_a_webhook_finds_its_messages_through_the_provider_id_index(
    database_url: str, stale: list[Any]
) -> None:
    """The provider-id index holds only messages that have one (migration 0020); the statuses'
    lookups by provider id still read it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in (status.LOCK_BY_PROVIDER_ID, status.ANY_MESSAGE_WITH):
            plan = _explain(
                conn, statement, {"provider": "meta", "wamids": '["wamid.1", "wamid.2"]'}
            )
            assert "uq_invite_message_provider_message_id" in plan, plan
            assert "Seq Scan on invite_message" not in plan, plan


async def test_the_reads_of_pending_messages_use_their_partial_indexes(
    database_url: str, stale: list[Any]
) -> None:
    """Those indexes read `dispatch_state`, not `state` (migration 0025): a statement that asks
    for `state` instead would read the whole run, or every message of every run."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        run, workspace = conn.execute(
            "SELECT run_id, workspace_id FROM invite_message WHERE id = %s", [stale[0]]
        ).fetchone() or (None, None)
        until = datetime(2030, 1, 1, tzinfo=UTC)
        statements: list[tuple[TextClause | str, dict[str, Any], str]] = [
            (claims.CLAIMABLE, {"run": run, "ws": workspace, "limit": 100}, "claimable"),
            (mt.HOLD_DUE, {"run": run, "until": until, "reason": "quiet_hours"}, "claimable"),
            (mt.CANCEL_QUEUED, {"run": run, "limit": mt.CANCEL_BATCH}, "claimable"),
            (mt.COUNT_CANCELLABLE, {"run": run}, "claimable"),
            (run_figures.HELD_SQL, {"run": run}, "held"),
            (
                messaging_limit.WINDOW_USE,
                {"sender": "106540352242922", "window": 86400.0, "limit": 1000},
                "leased",
            ),
        ]
        for statement, params, index in statements:
            plan = _explain(conn, statement, params)
            assert f"ix_invite_message_{index}" in plan, (index, plan)
            assert "Seq Scan on invite_message" not in plan, (index, plan)

        # The reconciler's scan of every run: the sent messages were sent, so that
        # ix_invite_message_run_sending_at holds them all as it does in production (empty, it
        # would cost the scan as little as the index it should read).
        conn.execute("UPDATE invite_message SET sending_at = sent_at WHERE sent_at IS NOT NULL")
        conn.execute("ANALYZE invite_message")
        plan = _explain(conn, mt.FAIL_UNKNOWN_OUTCOMES, {"window": 60.0})
        assert "ix_invite_message_unresolved_sending" in plan, plan
        assert "Seq Scan on invite_message" not in plan, plan
