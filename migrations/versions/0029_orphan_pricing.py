"""A status that waits for its message (an orphan) keeps the pricing block it came with.

A status that arrives before the dispatcher stored its message's provider id is held as an
orphan and applied later, but the pricing block Meta reported with it was dropped: when every
status carrying pricing came early, the message was never costed (GetRunStatus's estimate and
the export missed it). The block is now kept on the orphan's status event and recorded on the
message when the orphan is matched. Adding a nullable column without a default rewrites nothing.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 19:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "status_event",
        sa.Column("pricing", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("status_event", "pricing")
