"""messages keyed to their run: one (run, workspace, event) foreign key; guest ids as snapshots

* invite_message: the three foreign keys run_id, workspace_id and event_id become one composite
  key to invite_send_run (id, workspace_id, event_id): a message can only carry its own run's
  workspace and event (stronger than before), and StartRun checks one key per row, not three.
* invite_message and precheck_candidate: no foreign keys on guest_unit_id / person_id. They are
  snapshots of what the resolver returned; guests are never hard-deleted, and a key check locks
  each parent row, which made a 100,000-recipient precheck and StartRun several times slower.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 00:02:46.377005
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SNAPSHOT_KEYS = (
    ("invite_message", "guest_unit_id", "guest_unit"),
    ("invite_message", "person_id", "person"),
    ("precheck_candidate", "guest_unit_id", "guest_unit"),
    ("precheck_candidate", "person_id", "person"),
)


def upgrade() -> None:
    op.create_unique_constraint(
        op.f("uq_invite_send_run_id_workspace_id_event_id"),
        "invite_send_run",
        ["id", "workspace_id", "event_id"],
    )
    for column, parent in (
        ("run_id", "invite_send_run"),
        ("workspace_id", "workspace"),
        ("event_id", "event"),
    ):
        op.drop_constraint(
            op.f(f"fk_invite_message_{column}_{parent}"), "invite_message", type_="foreignkey"
        )
    op.create_foreign_key(
        op.f("fk_invite_message_run_id_invite_send_run"),
        "invite_message",
        "invite_send_run",
        ["run_id", "workspace_id", "event_id"],
        ["id", "workspace_id", "event_id"],
    )
    for table, column, parent in _SNAPSHOT_KEYS:
        op.drop_constraint(op.f(f"fk_{table}_{column}_{parent}"), table, type_="foreignkey")


def downgrade() -> None:
    for table, column, parent in _SNAPSHOT_KEYS:
        op.create_foreign_key(
            op.f(f"fk_{table}_{column}_{parent}"), table, parent, [column], ["id"]
        )
    op.drop_constraint(
        op.f("fk_invite_message_run_id_invite_send_run"), "invite_message", type_="foreignkey"
    )
    for column, parent in (
        ("run_id", "invite_send_run"),
        ("workspace_id", "workspace"),
        ("event_id", "event"),
    ):
        op.create_foreign_key(
            op.f(f"fk_invite_message_{column}_{parent}"), "invite_message", parent, [column], ["id"]
        )
    op.drop_constraint(
        op.f("uq_invite_send_run_id_workspace_id_event_id"), "invite_send_run", type_="unique"
    )
