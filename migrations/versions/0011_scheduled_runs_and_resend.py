"""scheduled runs, run deadlines, resend runs, quiet hours and the messaging limit

* invite_send_run: `send_at` (a run in the new state `scheduled` waits for it), `deadline`
  (unsent messages then fail with the new reason `expired`) and `parent_run_id` (ResendRun's
  link to the earlier run); partial indexes for the reconciler's due and deadline scans.
* Quiet hours: `workspace.send_window` and `invite_send_run.send_window` ("HH:MM-HH:MM", the
  run's overriding the workspace's); `invite_message.hold_reason` says why a queued message
  waits until its next_attempt_at (`quiet_hours`, or `marketing_limit` for a message deferred
  by Meta's per-user marketing cap, 131049).
* Messaging limit: `workspace.messaging_limit` (Meta's portfolio tier: unique recipients per
  moving 24 h; NULL unlimited) and an index on recent sends per run for the window's count;
  `hold_reason` `messaging_limit` for messages waiting for the window to free.
* CHECK constraints follow the vocabulary: run state `scheduled`, rejection reason `expired`.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-04 19:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REASONS_BEFORE = (
    "do_not_message",
    "no_phone",
    "invalid_phone",
    "duplicate_target",
    "already_invited",
    "guest_inactive",
    "outcome_unknown",
    "retries_exhausted",
    "provider_rejected",
)
_RUN_STATES_BEFORE = ("queued", "dispatching", "paused", "completed", "cancelled")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def upgrade() -> None:
    op.add_column("workspace", sa.Column("messaging_limit", sa.Integer()))
    op.create_check_constraint(
        op.f("ck_workspace_limit_positive"),
        "workspace",
        "messaging_limit IS NULL OR messaging_limit > 0",
    )
    op.create_index(
        "ix_invite_message_run_sending_at",
        "invite_message",
        ["run_id", "sending_at"],
        postgresql_where=sa.text("sending_at IS NOT NULL"),
    )
    op.add_column("workspace", sa.Column("send_window", sa.Text()))
    op.add_column("invite_send_run", sa.Column("send_window", sa.Text()))
    op.add_column("invite_message", sa.Column("hold_reason", sa.Text()))
    op.create_check_constraint(
        op.f("ck_invite_message_hold_reason_valid"),
        "invite_message",
        "hold_reason IN ('quiet_hours', 'marketing_limit', 'messaging_limit')",
    )
    op.add_column("invite_send_run", sa.Column("send_at", sa.DateTime(timezone=True)))
    op.add_column("invite_send_run", sa.Column("deadline", sa.DateTime(timezone=True)))
    op.add_column("invite_send_run", sa.Column("parent_run_id", sa.Uuid()))
    op.create_foreign_key(
        op.f("fk_invite_send_run_parent_run_id_invite_send_run"),
        "invite_send_run",
        "invite_send_run",
        ["parent_run_id"],
        ["id"],
    )
    op.create_index(op.f("ix_invite_send_run_parent_run_id"), "invite_send_run", ["parent_run_id"])
    op.create_index(
        "ix_invite_send_run_scheduled",
        "invite_send_run",
        ["send_at"],
        postgresql_where=sa.text("state = 'scheduled'"),
    )
    op.create_index(
        "ix_invite_send_run_deadline",
        "invite_send_run",
        ["deadline"],
        postgresql_where=sa.text("deadline IS NOT NULL AND finished_at IS NULL"),
    )
    _replace_check(
        "invite_send_run", "state_valid", _in("state", ("scheduled", *_RUN_STATES_BEFORE))
    )
    op.create_check_constraint(
        op.f("ck_invite_send_run_scheduled_has_send_at"),
        "invite_send_run",
        "state <> 'scheduled' OR send_at IS NOT NULL",
    )
    op.create_check_constraint(
        op.f("ck_invite_send_run_deadline_after_send_at"),
        "invite_send_run",
        "deadline IS NULL OR send_at IS NULL OR deadline > send_at",
    )
    for table in ("invite_message", "precheck_candidate"):
        _replace_check(
            table,
            "rejection_reason_valid",
            _in("rejection_reason", (*_REASONS_BEFORE, "expired")),
        )


def downgrade() -> None:
    for table in ("invite_message", "precheck_candidate"):
        _replace_check(table, "rejection_reason_valid", _in("rejection_reason", _REASONS_BEFORE))
    op.drop_constraint(
        op.f("ck_invite_send_run_deadline_after_send_at"), "invite_send_run", type_="check"
    )
    op.drop_constraint(
        op.f("ck_invite_send_run_scheduled_has_send_at"), "invite_send_run", type_="check"
    )
    _replace_check("invite_send_run", "state_valid", _in("state", _RUN_STATES_BEFORE))
    op.drop_index("ix_invite_send_run_deadline", table_name="invite_send_run")
    op.drop_index("ix_invite_send_run_scheduled", table_name="invite_send_run")
    op.drop_index(op.f("ix_invite_send_run_parent_run_id"), table_name="invite_send_run")
    op.drop_constraint(
        op.f("fk_invite_send_run_parent_run_id_invite_send_run"),
        "invite_send_run",
        type_="foreignkey",
    )
    op.drop_column("invite_send_run", "parent_run_id")
    op.drop_column("invite_send_run", "deadline")
    op.drop_column("invite_send_run", "send_at")
    op.drop_constraint(op.f("ck_invite_message_hold_reason_valid"), "invite_message", type_="check")
    op.drop_column("invite_message", "hold_reason")
    op.drop_column("invite_send_run", "send_window")
    op.drop_column("workspace", "send_window")
    op.drop_index("ix_invite_message_run_sending_at", table_name="invite_message")
    op.drop_constraint(op.f("ck_workspace_limit_positive"), "workspace", type_="check")
    op.drop_column("workspace", "messaging_limit")
