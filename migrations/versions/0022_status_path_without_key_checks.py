"""The status path writes no index entry and runs no key check that guards nothing.

ApplyStatus inserts a `status_event` row per status, and every message it changes adds a
`change_log` row that the sequencer numbers later. Measured on 2,000-status batches (`read` on
`sent` messages, the 50-statuses-per-POST load): Postgres spent 90-97 µs of CPU per status, of
which these took 16-22 µs:

* `status_event`'s foreign keys to `invite_message` and `webhook_receipt` ran two key checks per
  row (a `SELECT ... FOR KEY SHARE` each). Both ids are written only by ApplyStatus, in one
  transaction with what they name: `message_id` from a message it holds locked (`FOR UPDATE`),
  `receipt_id` through a join with `webhook_receipt` in the INSERT itself. Messages and receipts
  are never deleted. So the keys guarded nothing the writer does not already guarantee (as for
  `precheck_candidate` in 0009).
* `UNIQUE (seq)` on `change_log` held every row, unnumbered ones included: each change wrote a
  NULL entry that nobody looks up. It is now partial, `WHERE seq IS NOT NULL`: uniqueness among
  numbers is the same (NULLs never conflicted), and `max(seq)` / `min(seq)` still read it (the
  planner adds `seq IS NOT NULL` to them).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 23:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "fk_status_event_message_id_invite_message": ("message_id", "invite_message"),
    "fk_status_event_receipt_id_webhook_receipt": ("receipt_id", "webhook_receipt"),
}
OLD_SEQ = "uq_change_log_seq"
NEW_SEQ = "uq_change_log_numbered_seq"


def upgrade() -> None:
    for name in KEYS:
        op.drop_constraint(name, "status_event", type_="foreignkey")
    op.create_index(
        NEW_SEQ, "change_log", ["seq"], unique=True, postgresql_where=sa.text("seq IS NOT NULL")
    )
    op.drop_constraint(OLD_SEQ, "change_log", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint(OLD_SEQ, "change_log", ["seq"])
    op.drop_index(NEW_SEQ, "change_log")
    for name, (column, table) in KEYS.items():
        op.create_foreign_key(name, "status_event", table, [column], ["id"])
