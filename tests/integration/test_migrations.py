"""Migrations are the only way the schema changes, and they never drift from the models."""

from __future__ import annotations

import psycopg
from alembic import command

from common.db.migrate import alembic_config, downgrade, upgrade


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_on_empty_database_creates_the_whole_schema(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    assert {
        "workspace",
        "membership",
        "event",
        "person",
        "guest_identity",
        "guest_unit",
        "guest_unit_membership",
        "tag",
        "guest_unit_tag",
        "import_run",
        "import_row",
        "event_audience",
        "event_audience_override",
        "template",
        "do_not_message_entry",
        "precheck",
        "precheck_candidate",
        "invite_send_run",
        "invite_message",
        "webhook_receipt",
        "status_event",
        "audit_entry",
    } <= _tables(empty_database_url)


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    # alembic check raises when autogenerate would produce any operation.
    command.check(alembic_config(database_url))


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    downgrade(empty_database_url, "base")
    assert _tables(empty_database_url) == {"alembic_version"}
    upgrade(empty_database_url)
    command.check(alembic_config(empty_database_url))
    assert "invite_message" in _tables(empty_database_url)
