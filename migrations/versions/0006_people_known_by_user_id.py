"""people known by Meta user id; receipts say which items were not read or ignored

* guest_identity: nullable ``provider_user_id`` (Meta's business-scoped user id for the phone),
  unique per workspace when set.
* do_not_message_entry: nullable ``provider_user_id``; ``phone_e164`` becomes nullable, with a
  CHECK that one of the two is set, and a partial unique index for active user-id entries per
  workspace (beside the one for active phones).
* webhook_receipt: ``notes`` (JSONB list of ``{path, kind, reason}``: items not read, changes
  ignored) and two more flags, ``unreadable_items`` and ``ignored`` (both on applied receipts).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_FLAGS = "flag IN ('invalid_json', 'unknown_shape', 'unknown_sender')"
_NEW_FLAGS = (
    "flag IN ('invalid_json', 'unknown_shape', 'unknown_sender', 'unreadable_items', 'ignored')"
)


def upgrade() -> None:
    op.add_column("guest_identity", sa.Column("provider_user_id", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_guest_identity_provider_user_id_not_empty"),
        "guest_identity",
        "provider_user_id <> ''",
    )
    op.create_index(
        "uq_guest_identity_provider_user_id",
        "guest_identity",
        ["workspace_id", "provider_user_id"],
        unique=True,
        postgresql_where=sa.text("provider_user_id IS NOT NULL"),
    )

    op.add_column("do_not_message_entry", sa.Column("provider_user_id", sa.Text(), nullable=True))
    op.alter_column("do_not_message_entry", "phone_e164", existing_type=sa.Text(), nullable=True)
    op.create_check_constraint(
        op.f("ck_do_not_message_entry_phone_or_user_id"),
        "do_not_message_entry",
        "phone_e164 IS NOT NULL OR provider_user_id IS NOT NULL",
    )
    op.create_check_constraint(
        op.f("ck_do_not_message_entry_provider_user_id_not_empty"),
        "do_not_message_entry",
        "provider_user_id <> ''",
    )
    op.create_index(
        "uq_do_not_message_entry_active_user_id",
        "do_not_message_entry",
        ["workspace_id", "provider_user_id"],
        unique=True,
        postgresql_where=sa.text("removed_at IS NULL AND provider_user_id IS NOT NULL"),
    )

    op.add_column(
        "webhook_receipt",
        sa.Column(
            "notes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.drop_constraint(op.f("ck_webhook_receipt_flag_valid"), "webhook_receipt", type_="check")
    op.create_check_constraint(op.f("ck_webhook_receipt_flag_valid"), "webhook_receipt", _NEW_FLAGS)


def downgrade() -> None:
    op.execute(
        "UPDATE webhook_receipt SET flag = NULL WHERE flag IN ('unreadable_items', 'ignored')"
    )
    op.drop_constraint(op.f("ck_webhook_receipt_flag_valid"), "webhook_receipt", type_="check")
    op.create_check_constraint(op.f("ck_webhook_receipt_flag_valid"), "webhook_receipt", _OLD_FLAGS)
    op.drop_column("webhook_receipt", "notes")

    # Entries known only by user id cannot survive a phone-only schema.
    op.execute("DELETE FROM do_not_message_entry WHERE phone_e164 IS NULL")
    op.drop_index("uq_do_not_message_entry_active_user_id", table_name="do_not_message_entry")
    op.drop_constraint(
        op.f("ck_do_not_message_entry_provider_user_id_not_empty"),
        "do_not_message_entry",
        type_="check",
    )
    op.drop_constraint(
        op.f("ck_do_not_message_entry_phone_or_user_id"), "do_not_message_entry", type_="check"
    )
    op.alter_column("do_not_message_entry", "phone_e164", existing_type=sa.Text(), nullable=False)
    op.drop_column("do_not_message_entry", "provider_user_id")

    op.drop_index("uq_guest_identity_provider_user_id", table_name="guest_identity")
    op.drop_constraint(
        op.f("ck_guest_identity_provider_user_id_not_empty"), "guest_identity", type_="check"
    )
    op.drop_column("guest_identity", "provider_user_id")
