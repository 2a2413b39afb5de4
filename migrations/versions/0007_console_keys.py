"""console keys: a membership's sign-in keys for the operator console, stored as SHA-256 digests

Revision ID: 0007
Revises: 0010
Create Date: 2026-12-04 19:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_key",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("membership_id", sa.Uuid(), nullable=False),
        sa.Column("key_sha256", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "length(key_sha256) = 32", name=op.f("ck_console_key_key_sha256_is_a_digest")
        ),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["membership.id"],
            name=op.f("fk_console_key_membership_id_membership"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_key")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_console_key_key_sha256")),
    )
    op.create_index(
        op.f("ix_console_key_membership_id"), "console_key", ["membership_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_key_membership_id"), table_name="console_key")
    op.drop_table("console_key")
