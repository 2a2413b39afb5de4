"""sender outage: a provider outage pauses the sender, not the audience

sender_rate_limit gains the outage of its sender, shared by every replica: `outage_reason`
(null = no outage), `outage_since`, `next_probe_at` (when one message may go out to test the
provider) and `probe_interval_seconds` (the back-off between probes, doubling to a cap).

Revision ID: 0008
Revises: 0009
Create Date: 2026-12-04 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the outage columns."""
    op.add_column("sender_rate_limit", sa.Column("outage_reason", sa.Text(), nullable=True))
    op.add_column(
        "sender_rate_limit", sa.Column("outage_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "sender_rate_limit", sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "sender_rate_limit",
        sa.Column("probe_interval_seconds", sa.Double(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    for column in ("probe_interval_seconds", "next_probe_at", "outage_since", "outage_reason"):
        op.drop_column("sender_rate_limit", column)
