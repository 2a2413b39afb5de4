"""The highest change number is kept in one row, never searched for.

The sequencer numbered each round after `max(seq)` of `change_log`, and every reader's head was
the same `max(seq)`. Postgres answers that from the end of an index only while its statistics
say the log holds numbered rows. Analysed before any was numbered (a new install, a test
database, `bench/dispatch.py`'s seed), it estimated one numbered row and aggregated over a whole
index instead, reading every numbered row (a heap fetch each, until a vacuum) on every round
and every read: 5.3 ms of a 12.7 ms round at 20,000 numbered rows, growing with the log until
the next analyse (autovacuum's, which this machine and CI do not run; its nap elsewhere).

`change_log_head` holds the highest number given. The sequencer reads it and moves it in the
statement that numbers the round (the advisory lock already makes it the only writer), and
readers read it instead of `max(seq)`: one row, whatever the statistics say.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 23:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_log_head",
        sa.Column("one", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("top", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("one", name=op.f("ck_change_log_head_one_row")),
        sa.PrimaryKeyConstraint("one", name=op.f("pk_change_log_head")),
    )
    op.execute("INSERT INTO change_log_head (top) SELECT coalesce(max(seq), 0) FROM change_log")


def downgrade() -> None:
    op.drop_table("change_log_head")
