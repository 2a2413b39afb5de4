"""The change-log triggers on UPDATE join their transition tables by hashing, never in a loop.

change_log_message_update and change_log_run_update pair each new row with its old row
(new_rows JOIN old_rows ON id). PL/pgSQL plans that statement once per connection and keeps
the plan, and a transition table's size is known only at planning: a connection whose first
update touched one message kept a nested loop, which compares every new row with every old
row. ApplyStatus and the send worker update hundreds to a thousand messages per statement, so
on such a connection the trigger took 42 µs per changed message (46 ms for 1,100 messages)
where a hash join takes under 4 µs. The functions now run with enable_nestloop off: whatever
size they were first planned for, the join is a hash (or merge) join, and for one row that
costs nothing more.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOINING_TRIGGER_FUNCTIONS = ("change_log_message_update", "change_log_run_update")


def upgrade() -> None:
    for name in JOINING_TRIGGER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {name}() SET enable_nestloop = off")


def downgrade() -> None:
    for name in JOINING_TRIGGER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {name}() RESET enable_nestloop")
