"""A message enters the provider-id index only once it has a provider id.

`UNIQUE (provider, provider_message_id)` held every message, NULL id included: StartRun's insert
and the lease and mark of every message (updates that cannot be HOT, so each writes a new entry
into every index) wrote an entry nobody can look up, since every reader asks for given provider
ids (ApplyStatus matching a webhook, the orphaned statuses). The unique index is now partial,
`WHERE provider_message_id IS NOT NULL`: uniqueness among provider ids is the same (NULLs never
conflicted), those readers use it as before (`provider_message_id = ...` implies the
predicate), and a message is written into it from its `sent` on.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 08:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "uq_invite_message_provider_provider_message_id"
NEW = "uq_invite_message_provider_message_id"


def upgrade() -> None:
    op.create_index(
        NEW,
        "invite_message",
        ["provider", "provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.drop_constraint(OLD, "invite_message", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint(OLD, "invite_message", ["provider", "provider_message_id"])
    op.drop_index(NEW, "invite_message")
