"""dispatch: run counters kept by triggers, the shared sender rate limit, one run per precheck

* invite_run_count: message counts per (run, state, reason, error code), maintained by
  statement-level triggers on invite_message (transition tables), so every writer (dispatcher,
  ApplyStatus, StartRun's bulk insert) keeps GetRunStatus right without extra code. Rows are
  sharded by pg_backend_pid(): concurrent writers never update the same counter row.
* sender_rate_limit: the GCRA schedule per sender phone number id shared by all replicas.
* precheck_candidate.guest_unit_name: the household name frozen at precheck time.
* invite_send_run UNIQUE (precheck_id): a precheck can start at most one run.
* ix_invite_message_event_unit: each household's latest invitation for an event.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-20 23:30:49.572676
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPSERT = """
    INSERT INTO invite_run_count AS c (run_id, shard, state, reason, error_code, count)
    SELECT run_id, pg_backend_pid(), state, reason, error_code, sum(delta)
    FROM ({rows}) AS d
    GROUP BY run_id, state, reason, error_code
    HAVING sum(delta) <> 0
    ORDER BY run_id, state, reason, error_code
    ON CONFLICT (run_id, shard, state, reason, error_code)
    DO UPDATE SET count = c.count + excluded.count;
"""
_ROWS = (
    "SELECT run_id, state, coalesce(rejection_reason, '') AS reason,"
    " coalesce(error_code, 0) AS error_code, {sign} AS delta FROM {table}"
)
_FUNCTIONS = {
    "invite_run_count_on_insert": _UPSERT.format(rows=_ROWS.format(sign=1, table="new_rows")),
    "invite_run_count_on_update": _UPSERT.format(
        rows=_ROWS.format(sign=1, table="new_rows")
        + " UNION ALL "
        + _ROWS.format(sign=-1, table="old_rows")
    ),
    "invite_run_count_on_delete": _UPSERT.format(rows=_ROWS.format(sign=-1, table="old_rows")),
}
_TRIGGERS = {
    "invite_run_count_insert": ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    "invite_run_count_update": (
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    ),
    "invite_run_count_delete": ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
}


def upgrade() -> None:
    op.create_table(
        "sender_rate_limit",
        sa.Column("sender_phone_number_id", sa.Text(), nullable=False),
        sa.Column(
            "next_slot_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("rate_factor", sa.Double(), server_default="1", nullable=False),
        sa.Column(
            "rate_factor_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("throttled_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "rate_factor > 0 AND rate_factor <= 1",
            name=op.f("ck_sender_rate_limit_rate_factor_range"),
        ),
        sa.PrimaryKeyConstraint("sender_phone_number_id", name=op.f("pk_sender_rate_limit")),
    )
    op.create_table(
        "invite_run_count",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("error_code", sa.Integer(), server_default="0", nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["invite_send_run.id"],
            name=op.f("fk_invite_run_count_run_id_invite_send_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "shard", "state", "reason", "error_code", name=op.f("pk_invite_run_count")
        ),
    )
    op.create_index(
        "ix_invite_message_event_unit",
        "invite_message",
        ["event_id", "guest_unit_id", "created_at"],
        unique=False,
    )
    op.create_unique_constraint(
        op.f("uq_invite_send_run_precheck_id"), "invite_send_run", ["precheck_id"]
    )
    op.add_column(
        "precheck_candidate",
        sa.Column("guest_unit_name", sa.Text(), server_default="", nullable=False),
    )
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{body}\n    RETURN NULL;\nEND\n$$"
        )
    for name, (event, referencing) in _TRIGGERS.items():
        function = "invite_run_count_on_" + event.lower()
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON invite_message {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    # Runs created before this revision get their counts once.
    op.execute(
        _UPSERT.format(rows=_ROWS.format(sign=1, table="invite_message")).replace(
            "pg_backend_pid()", "0"
        )
    )


def downgrade() -> None:
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON invite_message")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_column("precheck_candidate", "guest_unit_name")
    op.drop_constraint(op.f("uq_invite_send_run_precheck_id"), "invite_send_run", type_="unique")
    op.drop_index("ix_invite_message_event_unit", table_name="invite_message")
    op.drop_table("invite_run_count")
    op.drop_table("sender_rate_limit")
