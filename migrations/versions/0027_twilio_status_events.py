"""Twilio's runs, messages and statuses are recorded under provider `twilio`.

Until now StartRun recorded every run and message with the provider the service was built with,
which was always `meta`, although a Twilio workspace's messages go out through Twilio (the
router picks the provider by the workspace at send time); and ApplyStatus stored every status
as Meta's, since its updates did not say who reported them. Matching worked only because both
were wrong alike. Runs and messages now take the workspace's `sender_provider`, and each status
its receipt's provider (StatusUpdate.provider).

This names the existing ones by what they are: the messages of Twilio workspaces (except a
message Meta sent before the workspace moved: its id is a `wamid.`) and what their runs still
create them with (`message_spec`), then the status events whose receipt came from Twilio or
whose message is Twilio's. On a large install the UPDATE of `invite_message` rewrites the
Twilio workspaces' messages only (docs/operations.md §2).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        UPDATE invite_send_run r
        SET message_spec = jsonb_set(r.message_spec, '{provider}', '"twilio"')
        FROM workspace w
        WHERE w.id = r.workspace_id AND w.sender_provider = 'twilio'
          AND r.message_spec ->> 'provider' = 'meta'
    """)
    op.execute("""
        UPDATE invite_message m SET provider = 'twilio'
        FROM workspace w
        WHERE w.id = m.workspace_id AND w.sender_provider = 'twilio' AND m.provider <> 'twilio'
          AND (m.provider_message_id IS NULL OR m.provider_message_id NOT LIKE 'wamid.%')
    """)
    op.execute("""
        UPDATE status_event e SET provider = 'twilio'
        WHERE e.provider = 'meta'
          AND (EXISTS (SELECT 1 FROM webhook_receipt r
                       WHERE r.id = e.receipt_id AND r.provider = 'twilio')
               OR EXISTS (SELECT 1 FROM invite_message m
                          WHERE m.id = e.message_id AND m.provider = 'twilio'))
    """)


def downgrade() -> None:
    # The code before this revision records and looks up everything as Meta's. A status
    # recorded both ways (an older and a newer ingestor while they were replaced) keeps its
    # Meta row: the Twilio one would break the unique key once renamed.
    op.execute("""
        DELETE FROM status_event t USING status_event m
        WHERE t.provider = 'twilio' AND m.provider = 'meta'
          AND m.provider_message_id = t.provider_message_id AND m.status = t.status
    """)
    op.execute("UPDATE status_event SET provider = 'meta' WHERE provider = 'twilio'")
    op.execute("UPDATE invite_message SET provider = 'meta' WHERE provider = 'twilio'")
    op.execute("""
        UPDATE invite_send_run SET message_spec = jsonb_set(message_spec, '{provider}', '"meta"')
        WHERE message_spec ->> 'provider' = 'twilio'
    """)
