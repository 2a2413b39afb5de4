"""The provider of a message and of a status event is checked, like a receipt's.

`invite_message.provider` and `status_event.provider` were free text while every other
enumerated column is CHECKed: a status only matches a message of its own provider (0027), so a
misspelt provider would leave its statuses orphaned for good, silently. Each constraint is added
NOT VALID (a moment's exclusive lock, no scan), committed, and then validated, which scans the
table under a lock that lets reads and writes go on (docs/operations.md §2).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("invite_message", "status_event")


def upgrade() -> None:
    for table in TABLES:
        name = f"ck_{table}_provider_valid"
        # Dropped first: an upgrade whose validation failed left it behind, unvalidated.
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name}"
            " CHECK (provider IN ('meta', 'twilio')) NOT VALID"
        )
    # Committed before the scans: the ADDs' exclusive locks would otherwise be held through them.
    with op.get_context().autocommit_block():
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT ck_{table}_provider_valid")


def downgrade() -> None:
    for table in TABLES:
        op.drop_constraint(op.f(f"ck_{table}_provider_valid"), table)
