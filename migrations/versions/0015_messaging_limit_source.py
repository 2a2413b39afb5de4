"""Where a workspace's messaging limit came from, and when: configured or read from Meta.

Meta announces the portfolio messaging limit in `business_capability_update` and
`phone_number_quality_update` webhooks and answers it on `GET /{phone-number-id}?fields=
whatsapp_business_manager_messaging_limit`; an operator may also set it. The newest word wins
(webhooks arrive out of order), so the limit keeps its source and time.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workspace", sa.Column("messaging_limit_source", sa.Text()))
    op.add_column("workspace", sa.Column("messaging_limit_updated_at", sa.DateTime(timezone=True)))
    op.create_check_constraint(
        op.f("ck_workspace_limit_source_valid"),
        "workspace",
        "messaging_limit_source IN ('operator', 'provider')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_workspace_limit_source_valid"), "workspace", type_="check")
    op.drop_column("workspace", "messaging_limit_updated_at")
    op.drop_column("workspace", "messaging_limit_source")
