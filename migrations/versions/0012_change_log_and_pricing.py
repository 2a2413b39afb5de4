"""changes and cost: an ordered change log filled by statement triggers, pricing per message

* change_log: one row per message or run state change (and per message or run created),
  written by statement-level AFTER INSERT/UPDATE triggers with transition tables on
  invite_message and invite_send_run: one INSERT ... SELECT per statement, in the writer's own
  transaction, so every writer (dispatcher, ApplyStatus, StartRun, CancelRun) feeds it with no
  code of its own. `id` (identity) orders a message's changes; `seq` is the stream's cursor,
  assigned after commit by one sequencer at a time (docs/changes.md explains why that is gapless).
* invite_message.pricing_*: the pricing block the provider reported with the message's statuses
  (billable, category, pricing model, type).
* callback_endpoint / callback_attempt: a workspace's signed-callback URL and secret, its
  delivery cursor into change_log and retry state, and the delivery log (dead letters included).
* workspace_rate: a workspace's rate card (price per country calling code and category), the
  estimate of GetRunStatus and PrecheckSend.

Revision ID: 0012
Revises: 0013
Create Date: 2026-12-04 19:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = {
    "change_log_message_insert": """
        INSERT INTO change_log (workspace_id, kind, run_id, event_id, message_id,
                                from_state, to_state, reason, error_code)
        SELECT n.workspace_id, 'message', n.run_id, n.event_id, n.id, NULL, n.state,
               n.rejection_reason, n.error_code
        FROM new_rows n ORDER BY n.position;""",
    "change_log_message_update": """
        INSERT INTO change_log (workspace_id, kind, run_id, event_id, message_id,
                                from_state, to_state, reason, error_code)
        SELECT n.workspace_id, 'message', n.run_id, n.event_id, n.id, o.state, n.state,
               n.rejection_reason, n.error_code
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.state IS DISTINCT FROM n.state ORDER BY n.id;""",
    "change_log_run_insert": """
        INSERT INTO change_log (workspace_id, kind, run_id, event_id, message_id,
                                from_state, to_state, reason)
        SELECT n.workspace_id, 'run', n.id, n.event_id, NULL, NULL, n.state, n.pause_reason
        FROM new_rows n;""",
    "change_log_run_update": """
        INSERT INTO change_log (workspace_id, kind, run_id, event_id, message_id,
                                from_state, to_state, reason)
        SELECT n.workspace_id, 'run', n.id, n.event_id, NULL, o.state, n.state, n.pause_reason
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.state IS DISTINCT FROM n.state;""",
}
_TRIGGERS = {
    "change_log_message_insert": ("INSERT", "invite_message", "NEW TABLE AS new_rows"),
    "change_log_message_update": (
        "UPDATE",
        "invite_message",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    ),
    "change_log_run_insert": ("INSERT", "invite_send_run", "NEW TABLE AS new_rows"),
    "change_log_run_update": (
        "UPDATE",
        "invite_send_run",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    ),
}


def upgrade() -> None:
    op.create_table(
        "change_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('message', 'run')", name=op.f("ck_change_log_kind_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
        sa.UniqueConstraint("seq", name=op.f("uq_change_log_seq")),
    )
    op.create_index(
        "ix_change_log_pending", "change_log", ["id"], postgresql_where=sa.text("seq IS NULL")
    )
    op.create_index(
        "ix_change_log_workspace_seq",
        "change_log",
        ["workspace_id", "seq"],
        postgresql_where=sa.text("seq IS NOT NULL"),
    )
    op.create_table(
        "workspace_rate",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("country_code", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(12, 6), nullable=False),
        sa.Column("currency", sa.Text(), server_default="USD", nullable=False),
        sa.CheckConstraint(
            "country_code = '*' OR country_code ~ '^[1-9][0-9]{0,3}$'",
            name=op.f("ck_workspace_rate_country_code_format"),
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_workspace_rate_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspace.id"],
            name=op.f("fk_workspace_rate_workspace_id_workspace"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "country_code", "category", name=op.f("pk_workspace_rate")
        ),
    )
    op.create_table(
        "callback_endpoint",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Text(), server_default="", nullable=False),
        sa.Column("delivered_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("dead_lettered_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("url ~ '^https?://'", name=op.f("ck_callback_endpoint_url_http")),
        sa.CheckConstraint("length(secret) >= 16", name=op.f("ck_callback_endpoint_secret_length")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspace.id"],
            name=op.f("fk_callback_endpoint_workspace_id_workspace"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_callback_endpoint")),
    )
    op.create_table(
        "callback_attempt",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'failed', 'dead_lettered')",
            name=op.f("ck_callback_attempt_outcome_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["callback_endpoint.workspace_id"],
            name=op.f("fk_callback_attempt_workspace_id_callback_endpoint"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempt")),
    )
    op.create_index(
        "ix_callback_attempt_workspace_id_attempted_at",
        "callback_attempt",
        ["workspace_id", "attempted_at"],
    )
    op.add_column("invite_message", sa.Column("pricing_billable", sa.Boolean(), nullable=True))
    op.add_column("invite_message", sa.Column("pricing_category", sa.Text(), nullable=True))
    op.add_column("invite_message", sa.Column("pricing_model", sa.Text(), nullable=True))
    op.add_column("invite_message", sa.Column("pricing_type", sa.Text(), nullable=True))
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN{body}\n    RETURN NULL;\nEND\n$$"
        )
    for name, (event, table, referencing) in _TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    for name, (_, table, _) in _TRIGGERS.items():
        op.execute(f"DROP TRIGGER {name} ON {table}")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    for column in ("pricing_type", "pricing_model", "pricing_category", "pricing_billable"):
        op.drop_column("invite_message", column)
    op.drop_table("workspace_rate")
    op.drop_index("ix_callback_attempt_workspace_id_attempted_at", table_name="callback_attempt")
    op.drop_table("callback_attempt")
    op.drop_table("callback_endpoint")
    op.drop_index("ix_change_log_workspace_seq", table_name="change_log")
    op.drop_index("ix_change_log_pending", table_name="change_log")
    op.drop_table("change_log")
