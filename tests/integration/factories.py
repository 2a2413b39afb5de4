"""Seeding helpers for tests and benchmarks: direct SQL inserts of workspaces, members, events,
templates, households (person + identity + unit + membership), audiences and do-not-message
entries. Synchronous psycopg, so async tests, process tests and bench scripts can all use them.

    with Seeder(database_url) as seed:
        ws = seed.workspace()
        admin = seed.member(ws, "parent_admin")
        event = seed.event(ws)
        template = seed.template(ws, variables=["guest_name", "event_date"])
        seed.households(ws, ["+14155550100", None, "+14155550100"])
        seed.audience_all(event, ws)
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import psycopg

DEFAULT_SENDER = "100000000000001"
# Household names sort in creation order (the resolver orders by name), across Seeders.
_household_numbers = itertools.count(1)


@dataclass(frozen=True)
class Household:
    """A seeded household and its contact."""

    guest_unit_id: uuid.UUID
    person_id: uuid.UUID | None
    phone_e164: str | None


class Seeder:
    """Inserts test data over one autocommit connection."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)

    def __enter__(self) -> Seeder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.conn.close()

    def insert(self, table: str, **values: Any) -> uuid.UUID:
        """Insert one row (id generated unless given) and return its id."""
        values.setdefault("id", uuid.uuid4())
        columns = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        self.conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            list(values.values()),
        )
        return uuid.UUID(str(values["id"]))

    def workspace(self, sender: str = DEFAULT_SENDER, region: str = "US") -> uuid.UUID:
        """A workspace sending from `sender`."""
        return self.insert(
            "workspace",
            name=f"Workspace {uuid.uuid4().hex[:6]}",
            default_region=region,
            sender_phone_number_id=sender,
        )

    def member(self, workspace_id: uuid.UUID, role: str = "parent_admin") -> uuid.UUID:
        """An active membership with `role`."""
        return self.insert(
            "membership", workspace_id=workspace_id, display_name=f"Member {role}", role=role
        )

    def event(
        self,
        workspace_id: uuid.UUID,
        name: str = "Our wedding",
        starts_at: datetime = datetime(2030, 6, 1, 17, 30, tzinfo=UTC),
        location: str = "Old Mill",
    ) -> uuid.UUID:
        """An event."""
        return self.insert(
            "event", workspace_id=workspace_id, name=name, starts_at=starts_at, location=location
        )

    def template(
        self,
        workspace_id: uuid.UUID,
        name: str = "event_invitation",
        language: str = "en_US",
        variables: Sequence[str] = ("guest_name", "event_date"),
        status: str = "APPROVED",
    ) -> uuid.UUID:
        """A template with ordered variable names."""
        return self.insert(
            "template",
            workspace_id=workspace_id,
            name=name,
            language=language,
            category="MARKETING",
            variables=list(variables),
            status=status,
        )

    def households(
        self,
        workspace_id: uuid.UUID,
        phones: Sequence[str | None],
        *,
        active: bool = True,
        malformed: Sequence[int] = (),
        names: Sequence[str] | None = None,
    ) -> list[Household]:
        """One household per phone, in order, each with a contact person. A phone repeated in
        the list gets a second person without a guest identity (identities are unique).
        `malformed` lists indexes whose phone is stored as written but not normalised."""
        seen: set[str] = set()
        result = []
        for index, phone in enumerate(phones):
            number = next(_household_numbers)
            bad = index in malformed
            status = "malformed" if bad else ("valid" if phone else "missing")
            person = self.insert(
                "person",
                workspace_id=workspace_id,
                display_name=f"Guest {number}",
                raw_phone=phone or "",
                phone_status=status,
                phone_e164=None if bad else phone,
                active=active,
            )
            if phone and not bad and phone not in seen:
                self.insert(
                    "guest_identity", workspace_id=workspace_id, phone_e164=phone, person_id=person
                )
                seen.add(phone)
            name = names[index] if names else f"Household {number:07d}"
            unit = self.insert(
                "guest_unit",
                workspace_id=workspace_id,
                name=name,
                contact_person_id=person,
                active=active,
            )
            self.insert(
                "guest_unit_membership",
                workspace_id=workspace_id,
                guest_unit_id=unit,
                person_id=person,
            )
            result.append(Household(unit, person, None if bad else phone))
        return result

    def bulk_households(
        self, workspace_id: uuid.UUID, count: int, phone_base: int = 14150000000
    ) -> None:
        """`count` households with valid, distinct phones (set-based: 100,000 in seconds)."""
        self.conn.execute(
            """
            WITH people AS (
              INSERT INTO person (workspace_id, display_name, raw_phone, phone_status, phone_e164)
              SELECT %(ws)s, 'Guest ' || i, '+' || (%(base)s + i), 'valid', '+' || (%(base)s + i)
              FROM generate_series(1, %(n)s) AS i
              RETURNING id, phone_e164, display_name),
            identities AS (
              INSERT INTO guest_identity (workspace_id, phone_e164, person_id)
              SELECT %(ws)s, phone_e164, id FROM people),
            units AS (
              INSERT INTO guest_unit (workspace_id, name, contact_person_id)
              SELECT %(ws)s, 'Household of ' || display_name || ' ' || phone_e164, id FROM people
              RETURNING id, contact_person_id)
            INSERT INTO guest_unit_membership (workspace_id, guest_unit_id, person_id)
            SELECT %(ws)s, id, contact_person_id FROM units
            """,
            {"ws": workspace_id, "base": phone_base, "n": count},
        )

    def audience_all(self, event_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
        """The event targets every household of the workspace."""
        self.conn.execute(
            "INSERT INTO event_audience (event_id, workspace_id, mode) VALUES (%s, %s, 'all')",
            (event_id, workspace_id),
        )

    def do_not_message(self, workspace_id: uuid.UUID, phone: str) -> uuid.UUID:
        """An active do-not-message entry."""
        return self.insert(
            "do_not_message_entry",
            workspace_id=workspace_id,
            phone_e164=phone,
            reason="test",
            source="operator",
        )

    def scalar(self, sql: str, *params: Any) -> Any:
        """The first column of the first row of a query."""
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Every row of a query."""
        return self.conn.execute(sql, params).fetchall()
