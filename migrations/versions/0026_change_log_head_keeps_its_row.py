"""change_log_head keeps its one row.

The sequencer numbers each round after `change_log_head.top` and moves it in the same statement
(migration 0023). Without the row, `top` reads NULL, so every number the round would give is
NULL, the statement updates no head and reports nothing numbered: the log stops being numbered
with no error anywhere, and every reader's head is NULL (WatchChanges and the callback
deliverers see nothing new, for good). Deleting the row is the kind of tidying an operator may
do to a one-row table. A trigger now refuses DELETE and TRUNCATE of it, naming the reason.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION change_log_head_keep() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'change_log_head keeps its one row: the change log is numbered after it'
            USING ERRCODE = 'restrict_violation',
                  HINT = 'docs/changes.md; to number from elsewhere, UPDATE its top instead';
        END $$
    """)
    op.execute("""
        CREATE TRIGGER change_log_head_keep_row BEFORE DELETE ON change_log_head
        FOR EACH ROW EXECUTE FUNCTION change_log_head_keep()
    """)
    op.execute("""
        CREATE TRIGGER change_log_head_keep_table BEFORE TRUNCATE ON change_log_head
        FOR EACH STATEMENT EXECUTE FUNCTION change_log_head_keep()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER change_log_head_keep_table ON change_log_head")
    op.execute("DROP TRIGGER change_log_head_keep_row ON change_log_head")
    op.execute("DROP FUNCTION change_log_head_keep()")
