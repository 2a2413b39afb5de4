"""Every state change a test makes is checked against the domain's transition tables.

The test template database gets statement-level triggers (in a schema of its own, which the
models and ``alembic check`` never see) that record each distinct (from, to) state pair an UPDATE
makes on ``invite_message`` and ``invite_send_run``. When a test's database is dropped,
:func:`check_transitions` fails the test if any recorded pair is not a transition of
``domain/transitions.py``: whatever statement made it, in whichever process. (Inserts are not
audited: tests seed rows in any state they need.)
"""

from __future__ import annotations

import psycopg
import pytest

from dispatch_service.domain.transitions import MESSAGE_MOVES, RUN_MOVES

_AUDIT_DDL = """
CREATE SCHEMA transition_audit;
CREATE TABLE transition_audit.seen (
    tbl text NOT NULL, old_state text, new_state text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tbl, old_state, new_state));
CREATE FUNCTION transition_audit.on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO transition_audit.seen
  SELECT DISTINCT TG_TABLE_NAME, o.state, n.state FROM old_rows o JOIN new_rows n USING (id)
  WHERE o.state IS DISTINCT FROM n.state
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
"""
_TABLES = ("invite_message", "invite_send_run")


def install_transition_audit(url: str) -> None:
    """Add the recording triggers to a migrated database (the tests' template)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_AUDIT_DDL)
        for table in _TABLES:
            conn.execute(
                f"CREATE TRIGGER transition_audit_update AFTER UPDATE ON {table}"
                " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
                " FOR EACH STATEMENT EXECUTE FUNCTION transition_audit.on_update()"
            )


def recorded_moves(url: str) -> set[tuple[str, str | None, str]]:
    """Every (table, from, to) state change a database recorded."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tbl, old_state, new_state FROM transition_audit.seen")
        return {(r[0], r[1], r[2]) for r in rows}


def _allowed() -> set[tuple[str, str | None, str]]:
    allowed: set[tuple[str, str | None, str]] = set()
    for table, moves in (("invite_message", MESSAGE_MOVES), ("invite_send_run", RUN_MOVES)):
        allowed |= {(table, a.value, b.value) for a, b in moves}
    return allowed


def check_transitions(url: str) -> None:
    """Fail the test when its database saw a state change outside the transition tables."""
    try:
        outside = recorded_moves(url) - _allowed()
    except psycopg.OperationalError:
        return  # the database is gone or unreachable (a test that stopped its server)
    if outside:
        pytest.fail(f"state changes outside the domain's transition tables: {sorted(outside)}")
