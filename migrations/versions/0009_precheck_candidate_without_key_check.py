"""precheck_candidate: no foreign key to precheck (a key check per candidate)

PrecheckSend now judges and inserts its 100,000 candidates in one INSERT ... SELECT; checking the
precheck key for every row took about a third of its time. Candidates are written only by that
statement, in the transaction that inserts their precheck, and prechecks are never deleted, so
the key guarded nothing the writer does not already guarantee (the guest ids of a candidate lost
their keys in 0005 for the same reason).

Revision ID: 0009
Revises: 0012
Create Date: 2026-12-04 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        op.f("fk_precheck_candidate_precheck_id_precheck"),
        "precheck_candidate",
        type_="foreignkey",
    )


def downgrade() -> None:
    op.create_foreign_key(
        op.f("fk_precheck_candidate_precheck_id_precheck"),
        "precheck_candidate",
        "precheck",
        ["precheck_id"],
        ["id"],
        ondelete="CASCADE",
    )
