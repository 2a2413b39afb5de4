"""Twilio senders: a workspace sends through Meta or Twilio; templates map to Twilio Content SIDs

* workspace.sender_provider: 'meta' (default, every existing workspace) or 'twilio'.
* workspace.twilio_account_sid: the Twilio account (AC + 32 hex), required for a Twilio sender.
  A Twilio workspace's sender_phone_number_id holds its Twilio sender as Twilio writes it in
  callbacks: the From address 'whatsapp:+E164', or a Messaging Service SID (MG + 32 hex). Runs,
  the shared rate limit and webhook binding keep keying on that one column.
* template.twilio_content_sid: the Content API SID (HX + 32 hex) a template is sent as on Twilio.
* webhook_receipt.provider: which provider's body a receipt is (Meta JSON or Twilio form), so the
  ingestor normalises it with the right reader.
* do_not_message_entry.source may be 'provider_error_21610' (Twilio's opt-out error).

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_DNM_SOURCES = (
    "'operator', 'user_preferences_stop', 'inbound_stop_keyword', 'provider_error_131050'"
)


def _dnm_sources(extra: str) -> None:
    op.drop_constraint(op.f("ck_do_not_message_entry_source_valid"), "do_not_message_entry")
    op.create_check_constraint(
        op.f("ck_do_not_message_entry_source_valid"),
        "do_not_message_entry",
        f"source IN ({_DNM_SOURCES}{extra})",
    )


def upgrade() -> None:
    _dnm_sources(", 'provider_error_21610'")
    op.add_column(
        "workspace",
        sa.Column("sender_provider", sa.Text(), server_default="meta", nullable=False),
    )
    op.add_column("workspace", sa.Column("twilio_account_sid", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_workspace_sender_provider_valid"),
        "workspace",
        "sender_provider IN ('meta', 'twilio')",
    )
    op.create_check_constraint(
        op.f("ck_workspace_twilio_sender"),
        "workspace",
        "sender_provider <> 'twilio' OR (twilio_account_sid ~ '^AC[0-9a-fA-F]{32}$' AND "
        "sender_phone_number_id ~ '^(whatsapp:\\+[1-9][0-9]{6,14}|MG[0-9a-fA-F]{32})$')",
    )
    op.add_column("template", sa.Column("twilio_content_sid", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_template_twilio_content_sid_format"),
        "template",
        "twilio_content_sid IS NULL OR twilio_content_sid ~ '^HX[0-9a-fA-F]{32}$'",
    )
    op.add_column(
        "webhook_receipt",
        sa.Column("provider", sa.Text(), server_default="meta", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_webhook_receipt_provider_valid"),
        "webhook_receipt",
        "provider IN ('meta', 'twilio')",
    )


def downgrade() -> None:
    op.execute("DELETE FROM do_not_message_entry WHERE source = 'provider_error_21610'")
    _dnm_sources("")
    op.drop_constraint(op.f("ck_webhook_receipt_provider_valid"), "webhook_receipt", type_="check")
    op.drop_column("webhook_receipt", "provider")
    op.drop_constraint(op.f("ck_template_twilio_content_sid_format"), "template", type_="check")
    op.drop_column("template", "twilio_content_sid")
    op.drop_constraint(op.f("ck_workspace_twilio_sender"), "workspace", type_="check")
    op.drop_constraint(op.f("ck_workspace_sender_provider_valid"), "workspace", type_="check")
    op.drop_column("workspace", "twilio_account_sid")
    op.drop_column("workspace", "sender_provider")
