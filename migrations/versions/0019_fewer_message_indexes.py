"""invite_message keeps two indexes fewer: every write of a message touched them.

A message's state changes four times on its way (leased, sending, sent, delivered/read) and
none of those updates can be HOT (the state is in several index predicates), so each writes a
new entry into every index of the table. Two indexes were paid on every one of those writes
for reads that others serve as well:

* `(event_id, phone_e164)` served only PrecheckSend's already-invited test, which reads every
  invitation of the event: `ix_invite_message_event_unit` (event_id first) finds the same rows.
* `(run_id, state)` served a run's messages in a given state. The queued ones have their
  partial indexes (claimable, held, leased); the one read left, whether a run still has a
  message `sending` (the run's completion), now reads `ix_invite_message_unresolved_sending`,
  whose key gains run_id in front of sending_at: it holds only the messages in flight, so the
  reconciler's scan of it across runs stays as small as before. Listing a run's messages in a
  state pages through the run in audience order (the unique (run_id, position) index).

Measured on 100,000 rows (two cores): inserting them 1.34 -> 1.15 s; each of the send
path's four updates of 30,000 of them 12-20% less time.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENDING = sa.text("state = 'sending'")


def upgrade() -> None:
    op.drop_index("ix_invite_message_event_id_invite_message_phone_e164", "invite_message")
    op.drop_index("ix_invite_message_run_id_invite_message_state", "invite_message")
    op.drop_index("ix_invite_message_unresolved_sending", "invite_message")
    op.create_index(
        "ix_invite_message_unresolved_sending",
        "invite_message",
        ["run_id", "sending_at"],
        postgresql_where=SENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_invite_message_unresolved_sending", "invite_message")
    op.create_index(
        "ix_invite_message_unresolved_sending",
        "invite_message",
        ["sending_at"],
        postgresql_where=SENDING,
    )
    op.create_index(
        "ix_invite_message_run_id_invite_message_state", "invite_message", ["run_id", "state"]
    )
    op.create_index(
        "ix_invite_message_event_id_invite_message_phone_e164",
        "invite_message",
        ["event_id", "phone_e164"],
    )
