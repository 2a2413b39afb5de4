"""Billable messages per (run, phone prefix, pricing category), kept by triggers.

GetRunStatus estimates a run's cost from its billable messages on every poll. It counted them
from invite_message (an index-only scan of ix_invite_message_billable): once the webhooks of a
large run priced its messages, every poll read one index entry per message. invite_run_billable
keeps the same figures the way invite_run_count keeps the states: statement-level triggers on
invite_message (transition tables), rows sharded by pg_backend_pid() so concurrent writers never
wait on one another, the messages already priced counted once here. A read sums a few rows per
prefix and category whatever the run's size; the index it replaces goes.

CREATE TRIGGER holds a lock on invite_message that blocks writers until this revision commits,
so no message is priced between the count below and the triggers taking over.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 02:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPSERT = """
    INSERT INTO invite_run_billable AS c (run_id, shard, prefix, category, count)
    SELECT run_id, pg_backend_pid(), prefix, category, sum(delta)
    FROM ({rows}) AS d
    GROUP BY run_id, prefix, category
    HAVING sum(delta) <> 0
    ORDER BY run_id, prefix, category
    ON CONFLICT (run_id, shard, prefix, category)
    DO UPDATE SET count = c.count + excluded.count;
"""
# '+' and at most four digits: the longest calling code a rate may name.
_ROWS = (
    "SELECT run_id, coalesce(substr(phone_e164, 1, 5), '') AS prefix,"
    " pricing_category AS category, {sign} AS delta FROM {table}"
    " WHERE pricing_billable AND pricing_category IS NOT NULL"
)
_FUNCTIONS = {
    "invite_run_billable_on_insert": _UPSERT.format(rows=_ROWS.format(sign=1, table="new_rows")),
    "invite_run_billable_on_update": _UPSERT.format(
        rows=_ROWS.format(sign=1, table="new_rows")
        + " UNION ALL "
        + _ROWS.format(sign=-1, table="old_rows")
    ),
    "invite_run_billable_on_delete": _UPSERT.format(rows=_ROWS.format(sign=-1, table="old_rows")),
}
_TRIGGERS = {
    "invite_run_billable_insert": ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    "invite_run_billable_update": (
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    ),
    "invite_run_billable_delete": ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
}


def upgrade() -> None:
    op.create_table(
        "invite_run_billable",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["invite_send_run.id"],
            name=op.f("fk_invite_run_billable_run_id_invite_send_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "shard", "prefix", "category", name=op.f("pk_invite_run_billable")
        ),
    )
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{body}\n    RETURN NULL;\nEND\n$$"
        )
    for name, (event, referencing) in _TRIGGERS.items():
        function = "invite_run_billable_on_" + event.lower()
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON invite_message {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    # Messages priced before this revision are counted once.
    op.execute(
        _UPSERT.format(rows=_ROWS.format(sign=1, table="invite_message")).replace(
            "pg_backend_pid()", "0"
        )
    )
    op.drop_index("ix_invite_message_billable", table_name="invite_message")


def downgrade() -> None:
    op.create_index(
        "ix_invite_message_billable",
        "invite_message",
        ["run_id", "pricing_category", "phone_e164"],
        postgresql_where=sa.text("pricing_billable AND pricing_category IS NOT NULL"),
    )
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON invite_message")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("invite_run_billable")
