"""Migrations are the only way the schema changes, and they never drift from the models."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from alembic import command

from cli.main import main as cli_main
from common.db.migrate import alembic_config, downgrade, upgrade
from tests.status_support import seed_run


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


def test_twilio_runs_messages_and_statuses_recorded_as_metas_are_named_twilio(
    empty_database_url: str,
) -> None:
    """Migration 0027: what the code before it recorded as Meta's in a Twilio workspace."""
    url = empty_database_url
    upgrade(url, "0026")
    twilio_ws = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO workspace (id, name, default_region, sender_phone_number_id,"
            " sender_provider, twilio_account_sid) VALUES (%s, 'T', 'US', %s, 'twilio', %s)",
            [twilio_ws, "whatsapp:+14155550000", "AC" + "0" * 32],
        )
    twilio = seed_run(url, 3, sender="whatsapp:+14155550000", workspace_id=twilio_ws)
    meta = seed_run(url, 1)
    sid, moved, unsent = twilio.message_ids
    with psycopg.connect(url, autocommit=True) as conn:
        # As before: every message and status 'meta'. One message was sent by Meta before the
        # workspace moved to Twilio (a wamid), one not at all yet.
        conn.execute(
            "UPDATE invite_message SET provider_message_id = 'SM' || md5(id::text) WHERE id = %s",
            [sid],
        )
        conn.execute("UPDATE invite_message SET provider_message_id = NULL WHERE id = %s", [unsent])
        conn.execute(
            'UPDATE invite_send_run SET message_spec = \'{"provider": "meta"}\' WHERE id = %s',
            [twilio.run_id],
        )
        for message in (sid, moved, meta.message_ids[0]):
            conn.execute(
                "INSERT INTO status_event (provider, provider_message_id, status,"
                " provider_timestamp, message_id, phone_number_id, outcome)"
                " SELECT 'meta', provider_message_id, 'delivered', now(), id, 'x', 'applied'"
                " FROM invite_message WHERE id = %s",
                [message],
            )
        # Orphans (no message): named by the receipt they came in, Twilio's or Meta's.
        for provider, key in (("twilio", "SM" + "1" * 32), ("meta", "wamid.orphan")):
            body = f'{{"orphan": "{key}"}}'.encode()
            conn.execute(
                "WITH receipt AS (INSERT INTO webhook_receipt (body, body_sha256,"
                " signature_verdict, state, provider) VALUES (%s, %s, 'valid', 'applied', %s)"
                " RETURNING id)"
                " INSERT INTO status_event (provider, provider_message_id, status,"
                " provider_timestamp, receipt_id, phone_number_id, outcome)"
                " SELECT 'meta', %s, 'delivered', now(), id, 'x', 'orphaned' FROM receipt",
                [body, hashlib.sha256(body).digest(), provider, key],
            )
    upgrade(url)
    with psycopg.connect(url) as conn:
        messages: dict[uuid.UUID, str] = {
            row[0]: row[1] for row in conn.execute("SELECT id, provider FROM invite_message")
        }
        events: dict[uuid.UUID, str] = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT message_id, provider FROM status_event WHERE message_id IS NOT NULL"
            )
        }
        orphans: dict[str, str] = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT provider_message_id, provider FROM status_event WHERE message_id IS NULL"
            )
        }
        spec = conn.execute(
            "SELECT message_spec ->> 'provider' FROM invite_send_run WHERE id = %s",
            [twilio.run_id],
        ).fetchone()
    assert messages == {sid: "twilio", moved: "meta", unsent: "twilio", meta.message_ids[0]: "meta"}
    assert events == {sid: "twilio", moved: "meta", meta.message_ids[0]: "meta"}
    assert orphans == {"SM" + "1" * 32: "twilio", "wamid.orphan": "meta"}
    assert spec == ("twilio",)

    # Back to 0026 after a status was recorded twice, as Meta's by an ingestor from before the
    # provider field and as Twilio's by a newer one: the old code holds one of them, Meta's.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO status_event (provider, provider_message_id, status, provider_timestamp,"
            " message_id, phone_number_id, outcome)"
            " SELECT 'meta', provider_message_id, status, provider_timestamp, message_id,"
            " phone_number_id, outcome FROM status_event WHERE provider = 'twilio'"
        )
    downgrade(url, "0026")
    with psycopg.connect(url) as conn:
        providers = conn.execute(
            "SELECT provider, count(*) FROM status_event GROUP BY 1"
        ).fetchall()
    assert providers == [("meta", 5)]


def test_a_check_that_existing_rows_fail_stops_migrate_with_the_constraint_named(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Migration 0028 validates the provider of every status event: a misspelt one stops
    `invites migrate` with Postgres's own words (the constraint, the table) and no traceback;
    once the row is fixed, `invites migrate` finishes."""
    url = empty_database_url
    upgrade(url, "0027")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO status_event (provider, provider_message_id, status, provider_timestamp,"
            " phone_number_id, outcome) VALUES ('whatsapp', 'wamid.M', 'sent', now(), 'x',"
            " 'orphaned')"
        )
    monkeypatch.setenv("DATABASE_URL", url)
    assert cli_main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert 'check constraint "ck_status_event_provider_valid"' in err
    assert "invites migrate" in err
    assert "Traceback" not in err
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE status_event SET provider = 'meta'")
    assert cli_main(["migrate"]) == 0
    command.check(alembic_config(url))
