"""Each guest's language: a household's preferred language, each candidate's and message's resolved
translation, and the `no_approved_translation` reason.

Also an index of the claimed, not yet marked messages: the messaging limit counts them on every
claim of a workspace that has a limit (persistence/messaging_limit.py), and without it a claim
scans every queued message of the sender's runs.

A run resolves each recipient's language among the approved translations of its template's name
(domain/languages.py); the precheck stores it per candidate and StartRun copies it to the message,
which is sent in it. A precheck without a fallback language blocks those no translation fits.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REASONS_BEFORE = (
    "do_not_message",
    "no_phone",
    "invalid_phone",
    "duplicate_target",
    "already_invited",
    "guest_inactive",
    "outcome_unknown",
    "retries_exhausted",
    "provider_rejected",
    "expired",
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def upgrade() -> None:
    op.add_column("guest_unit", sa.Column("preferred_language", sa.Text()))
    op.add_column("precheck_candidate", sa.Column("language", sa.Text()))
    op.add_column("invite_message", sa.Column("language", sa.Text()))
    op.add_column("precheck", sa.Column("fallback_language", sa.Text()))
    op.create_index(
        "ix_invite_message_leased",
        "invite_message",
        ["run_id"],
        postgresql_where=sa.text("state = 'queued' AND lease_owner IS NOT NULL"),
    )
    for table in ("invite_message", "precheck_candidate"):
        _replace_check(
            table,
            "rejection_reason_valid",
            _in("rejection_reason", (*_REASONS_BEFORE, "no_approved_translation")),
        )


def downgrade() -> None:
    for table in ("invite_message", "precheck_candidate"):
        _replace_check(table, "rejection_reason_valid", _in("rejection_reason", _REASONS_BEFORE))
    op.drop_index("ix_invite_message_leased", table_name="invite_message")
    op.drop_column("precheck", "fallback_language")
    op.drop_column("invite_message", "language")
    op.drop_column("precheck_candidate", "language")
    op.drop_column("guest_unit", "preferred_language")
