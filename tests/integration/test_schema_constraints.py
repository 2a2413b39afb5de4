"""The database itself rejects rows that break the product's invariants (SPEC §3)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def insert(conn: psycopg.Connection[Any], table: str, **values: Any) -> uuid.UUID:
    """Insert one row and return its id (generated when not given)."""
    values.setdefault("id", uuid.uuid4())
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values()))
    return values["id"]


class World:
    """A minimal workspace with a person, a household, an event, a template, a run."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.workspace = insert(
            conn, "workspace", name="W", default_region="US", sender_phone_number_id="1"
        )
        self.member = insert(
            conn, "membership", workspace_id=self.workspace, display_name="A", role="parent_admin"
        )
        self.person = self.new_person("+15550100001")
        self.unit = insert(conn, "guest_unit", workspace_id=self.workspace, name="Smiths")
        self.event = insert(
            conn, "event", workspace_id=self.workspace, name="Party", starts_at="2027-01-01"
        )
        self.template = insert(
            conn,
            "template",
            workspace_id=self.workspace,
            name="invite",
            language="en_US",
            category="MARKETING",
            status="APPROVED",
        )
        self.run = self.new_run("key-1")

    def new_precheck(self) -> uuid.UUID:
        return insert(
            self.conn,
            "precheck",
            workspace_id=self.workspace,
            event_id=self.event,
            template_id=self.template,
            actor_id=self.member,
            audience_hash="h",
            total_count=0,
            eligible_count=0,
            blocked_count=0,
            expires_at="2030-01-01",
        )

    def new_person(self, phone: str) -> uuid.UUID:
        return insert(
            self.conn,
            "person",
            workspace_id=self.workspace,
            display_name="P",
            raw_phone=phone,
            phone_status="valid",
            phone_e164=phone,
        )

    def new_run(self, key: str, precheck: uuid.UUID | None = None) -> uuid.UUID:
        return insert(
            self.conn,
            "invite_send_run",
            workspace_id=self.workspace,
            event_id=self.event,
            template_id=self.template,
            language="en_US",
            precheck_id=precheck or self.new_precheck(),
            actor_id=self.member,
            idempotency_key=key,
            sender_phone_number_id="1",
            state="queued",
        )

    def new_message(self, position: int, phone: str | None, **extra: Any) -> uuid.UUID:
        extra.setdefault("state", "queued")
        return insert(
            self.conn,
            "invite_message",
            run_id=self.run,
            workspace_id=self.workspace,
            event_id=self.event,
            position=position,
            guest_unit_id=self.unit,
            phone_e164=phone,
            **extra,
        )

    def new_receipt(self, body: bytes) -> uuid.UUID:
        return insert(
            self.conn,
            "webhook_receipt",
            body=body,
            body_sha256=hashlib.sha256(body).digest(),
            signature_verdict="valid",
            state="pending",
        )


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> World:
    return World(db)


def test_one_normalised_phone_identity_per_workspace(world: World) -> None:
    other = world.new_person("+15550100002")
    insert(
        world.conn,
        "guest_identity",
        workspace_id=world.workspace,
        phone_e164="+15550100001",
        person_id=world.person,
    )
    with pytest.raises(errors.UniqueViolation):
        insert(
            world.conn,
            "guest_identity",
            workspace_id=world.workspace,
            phone_e164="+15550100001",
            person_id=other,
        )


def test_identity_phone_must_be_e164(world: World) -> None:
    with pytest.raises(errors.CheckViolation):
        insert(
            world.conn,
            "guest_identity",
            workspace_id=world.workspace,
            phone_e164="555-0100",
            person_id=world.person,
        )


def test_malformed_phone_has_no_normalised_form(world: World) -> None:
    with pytest.raises(errors.CheckViolation):
        insert(
            world.conn,
            "person",
            workspace_id=world.workspace,
            display_name="X",
            raw_phone="12",
            phone_status="malformed",
            phone_e164="+15550100009",
        )


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("guest_identity", "person_id", {"phone_e164": "+15550100001"}),
        ("guest_unit_membership", "person_id", {"guest_unit_id": None}),
        ("guest_unit", "contact_person_id", {"name": "Theirs"}),
    ],
)
def test_a_guest_row_names_a_person_of_its_own_workspace(
    world: World, table: str, column: str, values: dict[str, Any]
) -> None:
    values = {k: v or world.unit for k, v in values.items()}
    other = insert(
        world.conn, "workspace", name="O", default_region="US", sender_phone_number_id="2"
    )
    with pytest.raises(errors.ForeignKeyViolation):  # a person of another workspace
        insert(world.conn, table, workspace_id=other, **{column: world.person}, **values)
    with pytest.raises(errors.ForeignKeyViolation):  # no such person
        insert(world.conn, table, workspace_id=world.workspace, **{column: uuid.uuid4()}, **values)
    insert(world.conn, table, workspace_id=world.workspace, **{column: world.person}, **values)


def test_person_in_at_most_one_active_household(world: World) -> None:
    second_unit = insert(world.conn, "guest_unit", workspace_id=world.workspace, name="Joneses")
    membership = {"workspace_id": world.workspace, "person_id": world.person}
    insert(world.conn, "guest_unit_membership", guest_unit_id=world.unit, **membership)
    with pytest.raises(errors.UniqueViolation):
        insert(world.conn, "guest_unit_membership", guest_unit_id=second_unit, **membership)
    # A closed membership does not count: moving someone closes the old one first.
    world.conn.execute("UPDATE guest_unit_membership SET active = false")
    insert(world.conn, "guest_unit_membership", guest_unit_id=second_unit, **membership)


def test_one_message_per_run_and_phone(world: World) -> None:
    world.new_message(1, "+15550100001")
    with pytest.raises(errors.UniqueViolation):
        world.new_message(2, "+15550100001")


def test_duplicate_target_is_kept_beside_the_first(world: World) -> None:
    world.new_message(1, "+15550100001")
    world.new_message(2, "+15550100001", state="blocked", rejection_reason="duplicate_target")


def test_provider_message_id_unique_per_provider(world: World) -> None:
    world.new_message(1, "+15550100001", state="sent", provider_message_id="wamid.A")
    with pytest.raises(errors.UniqueViolation):
        world.new_message(2, "+15550100002", state="sent", provider_message_id="wamid.A")
    world.new_message(3, "+15550100003", provider="twilio", provider_message_id="wamid.A")


def test_run_idempotency_key_unique_per_workspace(world: World) -> None:
    with pytest.raises(errors.UniqueViolation):
        world.new_run("key-1")
    world.new_run("key-2")


def test_a_precheck_starts_at_most_one_run(world: World) -> None:
    precheck = world.new_precheck()
    world.new_run("key-a", precheck)
    with pytest.raises(errors.UniqueViolation):
        world.new_run("key-b", precheck)


def test_a_message_carries_its_own_runs_workspace_and_event(world: World) -> None:
    other_event = insert(
        world.conn, "event", workspace_id=world.workspace, name="Other", starts_at="2027-01-01"
    )
    with pytest.raises(errors.ForeignKeyViolation):
        insert(
            world.conn,
            "invite_message",
            run_id=world.run,
            workspace_id=world.workspace,
            event_id=other_event,
            position=1,
            guest_unit_id=world.unit,
            state="queued",
        )


def test_one_webhook_receipt_per_body_hash(world: World) -> None:
    world.new_receipt(b'{"object":"whatsapp_business_account"}')
    with pytest.raises(errors.UniqueViolation):
        world.new_receipt(b'{"object":"whatsapp_business_account"}')


def test_one_status_event_per_provider_message_id_and_status(world: World) -> None:
    event = {"provider_message_id": "wamid.A", "provider_timestamp": "2027-01-01"}
    world.conn.execute(
        "INSERT INTO status_event (provider_message_id, status, provider_timestamp, outcome)"
        " VALUES (%(provider_message_id)s, 'delivered', %(provider_timestamp)s, 'orphaned')",
        event,
    )
    with pytest.raises(errors.UniqueViolation):
        world.conn.execute(
            "INSERT INTO status_event (provider_message_id, status, provider_timestamp, outcome)"
            " VALUES (%(provider_message_id)s, 'delivered', %(provider_timestamp)s, 'duplicate')",
            event,
        )


def test_a_status_events_provider_is_checked(world: World) -> None:
    """A misspelt provider would never match a message (0028)."""
    with pytest.raises(errors.CheckViolation):
        world.conn.execute(
            "INSERT INTO status_event (provider, provider_message_id, status, provider_timestamp,"
            " outcome) VALUES ('Twilio', 'SM1', 'delivered', now(), 'orphaned')"
        )


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("invite_message", "state", "delivered_maybe"),
        ("invite_message", "rejection_reason", "felt_like_it"),
        ("invite_message", "provider", "whatsapp"),
        ("invite_send_run", "state", "running"),
        ("membership", "role", "owner"),
        ("template", "status", "approved"),
        ("webhook_receipt", "state", "done"),
    ],
)
def test_enumerated_states_are_checked(world: World, table: str, column: str, value: str) -> None:
    world.new_message(1, "+15550100001")
    world.new_receipt(b"{}")
    with pytest.raises(errors.CheckViolation):
        world.conn.execute(f"UPDATE {table} SET {column} = %s", (value,))


def test_blocked_message_needs_a_reason(world: World) -> None:
    with pytest.raises(errors.CheckViolation):
        world.new_message(1, "+15550100001", state="blocked")


def test_unsigned_receipts_cannot_be_stored(world: World) -> None:
    with pytest.raises(errors.CheckViolation):
        insert(
            world.conn,
            "webhook_receipt",
            body=b"{}",
            body_sha256=hashlib.sha256(b"{}").digest(),
            signature_verdict="invalid",
            state="pending",
        )


@pytest.mark.parametrize(
    ("table", "values"),
    [
        ("membership", {"display_name": "A", "role": "admin"}),
        ("event", {"name": "E", "starts_at": "2027-01-01"}),
        ("guest_unit", {"name": "U"}),
    ],
)
def test_rows_must_belong_to_an_existing_workspace(
    world: World, table: str, values: dict[str, Any]
) -> None:
    with pytest.raises(errors.ForeignKeyViolation):
        insert(world.conn, table, workspace_id=uuid.uuid4(), **values)


def test_messages_must_belong_to_an_existing_run(world: World) -> None:
    with pytest.raises(errors.ForeignKeyViolation):
        insert(
            world.conn,
            "invite_message",
            run_id=uuid.uuid4(),
            workspace_id=world.workspace,
            event_id=world.event,
            position=1,
            guest_unit_id=world.unit,
            state="queued",
        )


def test_one_active_do_not_message_entry_per_phone(world: World) -> None:
    entry = {"workspace_id": world.workspace, "phone_e164": "+15550100001", "source": "operator"}
    first = insert(world.conn, "do_not_message_entry", **entry)
    with pytest.raises(errors.UniqueViolation):
        insert(world.conn, "do_not_message_entry", **entry)
    world.conn.execute("UPDATE do_not_message_entry SET removed_at = now() WHERE id = %s", (first,))
    insert(world.conn, "do_not_message_entry", **entry)
