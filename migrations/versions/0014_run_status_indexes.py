"""GetRunStatus stays cheap on large runs: partial indexes for held and billable messages.

GetRunStatus (and WatchRun, which polls it) counts a run's held messages (quiet hours, the
messaging limit) and its billable messages per pricing category on every call. Without an index
both scan every message of the run (100,000 rows on a large run, tens of milliseconds); with these
the held count touches only held rows and the billable count is an index-only scan.

Revision ID: 0014
Revises: 0008
Create Date: 2026-12-04 20:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_invite_message_held",
        "invite_message",
        ["run_id", "hold_reason"],
        postgresql_where=sa.text("state = 'queued' AND hold_reason IS NOT NULL"),
    )
    op.create_index(
        "ix_invite_message_billable",
        "invite_message",
        ["run_id", "pricing_category", "phone_e164"],
        postgresql_where=sa.text("pricing_billable AND pricing_category IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_invite_message_billable", table_name="invite_message")
    op.drop_index("ix_invite_message_held", table_name="invite_message")
