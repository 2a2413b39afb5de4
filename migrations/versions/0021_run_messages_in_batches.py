"""StartRun commits its first messages on their own; the rest follow in batches.

A run's messages were created by one INSERT in StartRun's transaction, so nothing could be sent
before the last of them was written (0.16 s for 10,000, 1.6 s for 100,000). StartRun now commits
the run with its first messages and creates the others in batches, one transaction each, before
it answers; the dispatcher starts on the first meanwhile. Two columns let any process finish
what a StartRun that died between its transactions left undone:

* `next_candidate_position`: the precheck candidate position from which messages are still to be
  created (NULL once every candidate has its message). The run cannot complete before it is NULL.
* `message_spec`: what every message of the run is created with: the provider, the template's
  variable sources and the event's values frozen at StartRun (by language), so messages created
  later or by another process read exactly as the first.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_invite_send_run_creating"


def upgrade() -> None:
    op.add_column("invite_send_run", sa.Column("next_candidate_position", sa.Integer()))
    op.add_column("invite_send_run", sa.Column("message_spec", postgresql.JSONB()))
    op.create_index(
        INDEX,
        "invite_send_run",
        ["id"],
        postgresql_where=sa.text("next_candidate_position IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, "invite_send_run")
    op.drop_column("invite_send_run", "message_spec")
    op.drop_column("invite_send_run", "next_candidate_position")
