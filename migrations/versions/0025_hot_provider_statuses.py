"""invite_message: provider statuses rewrite a message in place (HOT updates).

Every index of `invite_message` that named `state` did so in its predicate, to hold only the
messages the dispatcher still has to move (queued, sending). Postgres rewrites a row in place
(a heap-only tuple, no new index entries) only when no indexed column changes, predicates
included. So each provider status (sent, delivered, read: three per message) wrote a new entry
into each of the table's non-partial indexes and into the provider-id index.

Those predicates now read `dispatch_state`, a stored generated column equal to `state` while it
is queued or sending and NULL after (the rule lives in `common/db/models.py`,
`DISPATCH_STATE`). A status moves `state` from sent on and leaves `dispatch_state` NULL, so no
indexed column changes. The table's fillfactor becomes 50: an in-place rewrite needs room on
the row's own page, and a message is written about seven times in its life (the dispatcher's
claim, mark and result still change indexed columns).

Measured on 40,000 `sent` messages, the status UPDATE of `persistence/message_transitions.py`
in batches of 2,000, sent -> delivered then delivered -> read, two alternating rounds:
51.6-63.1 µs a row before; 32.1-33.0 µs after, 96% of the updates HOT. Fillfactor 100, 80, 70
and 60 gave 61.0, 55.0, 53.8 and 38.4 µs (HOT for 0%, 31%, 56% and 76%).

The column is added by rewriting the table, under an ACCESS EXCLUSIVE lock for as long as that
takes: 1.2 s for 100,000 messages on the bench machine, whose table grew from 19 to 39 MB.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rule as it stood when this migration was written (models.DISPATCH_STATE holds the live one).
DISPATCH_STATE = "CASE WHEN state IN ('queued', 'sending') THEN state END"
# index -> (columns, predicate before, predicate after)
INDEXES = {
    "ix_invite_message_claimable": (
        ["run_id", "next_attempt_at"],
        "state = 'queued'",
        "dispatch_state = 'queued'",
    ),
    "ix_invite_message_unresolved_sending": (
        ["run_id", "sending_at"],
        "state = 'sending'",
        "dispatch_state = 'sending'",
    ),
    "ix_invite_message_leased": (
        ["run_id"],
        "state = 'queued' AND lease_owner IS NOT NULL",
        "dispatch_state = 'queued' AND lease_owner IS NOT NULL",
    ),
    "ix_invite_message_held": (
        ["run_id", "hold_reason"],
        "state = 'queued' AND hold_reason IS NOT NULL",
        "dispatch_state = 'queued' AND hold_reason IS NOT NULL",
    ),
}


def _recreate(predicate: int) -> None:
    for name, (columns, *predicates) in INDEXES.items():
        op.drop_index(name, "invite_message")
        op.create_index(
            name, "invite_message", columns, postgresql_where=sa.text(predicates[predicate])
        )


def upgrade() -> None:
    op.execute("ALTER TABLE invite_message SET (fillfactor = 50)")
    op.add_column(
        "invite_message",
        sa.Column("dispatch_state", sa.Text(), sa.Computed(DISPATCH_STATE, persisted=True)),
    )
    _recreate(predicate=1)


def downgrade() -> None:
    _recreate(predicate=0)
    op.drop_column("invite_message", "dispatch_state")
    op.execute("ALTER TABLE invite_message RESET (fillfactor)")
