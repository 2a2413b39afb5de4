"""Guest import rules (pure): the CSV format, row preparation and the per-batch import plan.

CSV format (UTF-8, optional BOM, header row first, RFC 4180 quoting). Spreadsheet exports are
read as they come: the separator is a comma, a semicolon or a tab (whichever splits the header
into known columns; an Excel ``sep=;`` first line names it outright), and trailing empty columns
(a header ending in ``,,`` and rows padded with empty fields) are ignored.

    column      required  meaning
    name        yes       the person's display name
    phone       yes       the phone as written; normalised to E.164 with the workspace's region
    household   no        the household's name; rows with the same name form one household
                          (empty: the person is a household of their own, named after them)
    tags        no        semicolon-separated labels for audience filters ("family;vip")
    side        no        for example "bride" or "groom"
    language    no        the household's language (es, pt_BR): invitations use the template's
                          translation that fits it (domain/languages.py)
    is_contact  no        yes/true/1/x marks the household's designated contact

Header names are matched case-insensitively; an unknown, duplicated or missing required column
rejects the whole file, and so does a structurally broken CSV (unterminated quote, a row with a
different number of fields than the header). Everything else is a row-level outcome:

    created                  a new person (valid phone) was stored
    updated                  a person with the same normalised phone existed and was updated
    reactivated              that person, or the household they landed in, was inactive
    warning_malformed_phone  stored with the phone as written; never inviteable
    skipped_no_phone         nothing stored: the row has no phone

Identity is the normalised phone (unique per workspace). People without a valid phone are matched
by name inside their household, so re-importing a file never duplicates them. A person is in at
most one active household: a row naming another household moves them (the old membership is
closed). A household's designated contact is the first ``is_contact`` row for it in the import;
otherwise its current contact is kept while it has a valid phone; otherwise the first person with
a valid phone to join it. Tags are added (never removed); a non-empty side replaces the old one.
"""

from __future__ import annotations

import codecs
import csv
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from common.vocabulary import ImportRowOutcome, PhoneStatus
from dispatch_service.domain.audience import normalise_label
from dispatch_service.domain.languages import guest_language
from dispatch_service.domain.phones import NormalisedPhone, normalise_phone
from dispatch_service.errors import FieldViolation, InvalidArgument

REQUIRED_COLUMNS = ("name", "phone")
OPTIONAL_COLUMNS = ("household", "tags", "side", "is_contact", "language")
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
TAG_SEPARATOR = ";"
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "x"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n"})
MAX_FIELD_CHARS = 1000
MAX_OPEN_RECORD_CHARS = 64 * 1024
"""How long a record may stay inside a quoted field (its fields are at most MAX_FIELD_CHARS)."""
DELIMITERS = (",", ";", "\t")


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestInput:
    """One input row as the operator wrote it (CSV line, contact or manual entry)."""

    row_number: int
    name: str
    phone: str
    household: str = ""
    tags: tuple[str, ...] = ()
    side: str = ""
    is_contact: bool = False
    raw: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    language: str = ""


def parse_header(fields: Sequence[str]) -> tuple[str, ...]:
    """The canonical column names of a CSV header, or InvalidArgument naming every problem."""
    columns = tuple(f.strip().lstrip("\ufeff").casefold() for f in fields)
    violations = [
        FieldViolation("csv.header", f"unknown column {c!r} (known: {', '.join(KNOWN_COLUMNS)})")
        for c in dict.fromkeys(columns)
        if c not in KNOWN_COLUMNS
    ]
    violations += [
        FieldViolation("csv.header", f"column {c!r} appears more than once")
        for c in dict.fromkeys(columns)
        if columns.count(c) > 1
    ]
    violations += [
        FieldViolation("csv.header", f"missing required column {c!r}")
        for c in REQUIRED_COLUMNS
        if c not in columns
    ]
    if violations:
        raise InvalidArgument(*violations)
    return columns


def sniff_delimiter(header_line: str) -> str:
    """The separator that splits a header line into the most known columns (comma on a tie)."""

    def known(delimiter: str) -> int:
        values = next(csv.reader([header_line], delimiter=delimiter), [])
        return sum(v.strip().lstrip("\ufeff").casefold() in KNOWN_COLUMNS for v in values)

    return max(DELIMITERS, key=known)  # max keeps the first of equals: the comma


def separator_hint(line: str) -> str | None:
    """The separator an Excel ``sep=X`` first line names, else None."""
    text = line.strip().lstrip("\ufeff")
    if len(text) == 5 and text[:4].casefold() == "sep=":
        return text[4]
    return None


def without_trailing_empties(values: Sequence[str], keep: int) -> list[str]:
    """`values` without empty fields past the first `keep` (spreadsheets pad rows with them)."""
    end = len(values)
    while end > keep and not values[end - 1].strip():
        end -= 1
    return list(values[:end])


def parse_flag(value: str) -> bool | None:
    """yes/true/1/y/x -> True, no/false/0/n/empty -> False, anything else -> None."""
    word = value.strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def csv_record_to_input(
    columns: Sequence[str], values: Sequence[str], row_number: int
) -> GuestInput:
    """A guest input from one CSV record (the caller checked its length)."""
    raw = dict(zip(columns, values, strict=True))
    notes: list[str] = []
    flag = parse_flag(raw.get("is_contact", ""))
    if flag is None:
        notes.append(f"is_contact {raw['is_contact']!r} not understood; treated as no")
    return GuestInput(
        row_number=row_number,
        name=raw["name"],
        phone=raw["phone"],
        household=raw.get("household", ""),
        tags=tuple(raw.get("tags", "").split(TAG_SEPARATOR)),
        side=raw.get("side", ""),
        is_contact=bool(flag),
        raw=raw,
        notes=tuple(notes),
        language=raw.get("language", ""),
    )


def inside_quotes(line: str, delimiter: str, inside: bool) -> bool:
    """Whether a record is inside a quoted field after `line` (it was before it if `inside`). As
    the csv module reads: a quote opens a quoted field only at a field's start (elsewhere, as in
    ``Dan O"Neil``, it is a character), and a doubled quote inside one is a quote."""
    if '"' not in line:
        return inside
    at_field_start = not inside
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if inside:
            if char == '"':
                if i + 1 < n and line[i + 1] == '"':
                    i += 2
                    continue
                inside = False
        else:
            if char == '"' and at_field_start:
                inside = True
            at_field_start = char == delimiter
        i += 1
    return inside


class CsvGuestReader:
    """Incremental CSV reader: feed byte chunks, get guest inputs; never holds the whole file.

    UTF-8 is decoded incrementally (a chunk may end inside a character). Lines are handed to the
    csv module only once a record's quoted fields are closed (`inside_quotes`), so a quoted field
    may span lines and chunks; a record still open after MAX_OPEN_RECORD_CHARS is refused.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self._bytes = 0
        self._partial_line = ""
        self._pending: list[str] = []
        self._pending_chars = 0
        self._inside_quotes = False
        self._line_number = 0  # physical lines handed to the csv module so far
        self._delimiter: str | None = None  # decided by the first non-blank line
        self.columns: tuple[str, ...] | None = None
        self.rows_read = 0

    def feed(self, chunk: bytes) -> list[GuestInput]:
        """The rows completed by this chunk."""
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as error:
            raise self._not_utf8(error) from None
        if "\x00" in text:
            offset = self._bytes + chunk.index(b"\x00")
            raise InvalidArgument(
                FieldViolation("csv", f"the file contains a NUL byte (offset {offset}): not text")
            )
        self._bytes += len(chunk)
        lines = (self._partial_line + text).split("\n")
        self._partial_line = lines.pop()
        return self._take_lines(line + "\n" for line in lines)

    def finish(self) -> list[GuestInput]:
        """The last rows; InvalidArgument if the file ends inside a character or a quoted field."""
        try:
            tail = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            raise self._not_utf8(error) from None
        last = self._partial_line + tail
        self._partial_line = ""
        rows = self._take_lines([last] if last else [])
        if self._pending:
            raise InvalidArgument(
                FieldViolation(
                    "csv",
                    f"line {self._line_number + 1}: a quoted field is never closed",
                )
            )
        if self.columns is None:
            raise InvalidArgument(FieldViolation("csv", "the file is empty (no header row)"))
        return rows

    def _not_utf8(self, error: UnicodeDecodeError) -> InvalidArgument:
        offset = self._bytes + error.start
        return InvalidArgument(
            FieldViolation("csv", f"the file is not UTF-8 (invalid byte at offset {offset})")
        )

    def _take_lines(self, lines: Iterable[str]) -> list[GuestInput]:
        complete: list[str] = []
        for line in lines:
            if self._delimiter is None and not self._pending:
                if not line.strip():
                    self._line_number += 1
                    continue
                hint = separator_hint(line)
                if hint is not None:
                    self._delimiter = hint
                    self._line_number += 1
                    continue
                self._delimiter = sniff_delimiter(line)
            self._pending.append(line)
            self._pending_chars += len(line)
            delimiter = self._delimiter or ","
            self._inside_quotes = inside_quotes(line, delimiter, self._inside_quotes)
            if not self._inside_quotes:
                complete += self._pending
                self._pending, self._pending_chars = [], 0
            elif self._pending_chars > MAX_OPEN_RECORD_CHARS:
                first = self._line_number + len(complete) + 1
                raise InvalidArgument(
                    FieldViolation(
                        "csv",
                        f"line {first}: a quoted field opened there is still open"
                        f" {MAX_OPEN_RECORD_CHARS:,} characters later (a stray quote?)",
                    )
                )
        return list(self._records(complete)) if complete else []

    def _records(self, lines: list[str]) -> Iterator[GuestInput]:
        first_line = self._line_number + 1
        reader = csv.reader(lines, delimiter=self._delimiter or ",", strict=True)
        try:
            for values in reader:
                line_number = first_line + reader.line_num - 1
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                yield from self._record(values, line_number)
        except csv.Error as error:
            line_number = first_line + reader.line_num - 1
            raise InvalidArgument(
                FieldViolation("csv", f"line {line_number}: malformed CSV ({error})")
            ) from None
        finally:
            self._line_number += len(lines)

    def _record(self, values: list[str], line_number: int) -> Iterator[GuestInput]:
        if self.columns is None:
            self.columns = parse_header(without_trailing_empties(values, 0))
            return
        values = without_trailing_empties(values, len(self.columns))
        if len(values) != len(self.columns):
            raise InvalidArgument(
                FieldViolation(
                    "csv",
                    f"line {line_number}: {len(values)} fields, the header has {len(self.columns)}",
                )
            )
        if max(map(len, values)) > MAX_FIELD_CHARS:
            raise InvalidArgument(
                FieldViolation(
                    "csv", f"line {line_number}: a field is over {MAX_FIELD_CHARS} chars"
                )
            )
        self.rows_read += 1
        yield csv_record_to_input(self.columns, values, self.rows_read)


# --- preparing rows ----------------------------------------------------------------------------


def clean_text(value: str) -> str:
    """Trimmed, inner whitespace collapsed (names compare this way)."""
    return " ".join(value.split())


@dataclass(frozen=True)
class PreparedRow:
    """A row with its phone normalised and its names, tags and side cleaned."""

    row_number: int
    household: str
    display_name: str
    phone: NormalisedPhone
    tags: tuple[str, ...]
    side: str | None
    is_contact: bool
    raw: Mapping[str, str]
    notes: tuple[str, ...]
    language: str | None = None


def prepare_row(
    row: GuestInput, default_region: str, phone: NormalisedPhone | None = None
) -> PreparedRow:
    """Normalise one input row; an empty household becomes the person's own, named after them.

    `phone`: the row's phone already normalised (by normalise_phones, in a worker), if it was."""
    notes = list(row.notes)
    name, household = clean_text(row.name), clean_text(row.household)
    if not household:
        household = name or clean_text(row.phone)
        if household:
            notes.append("no household given: the guest is a household of their own")
    tags = tuple(dict.fromkeys(t for t in map(normalise_label, row.tags) if t))
    language = guest_language(row.language)
    if row.language.strip() and language is None:
        notes.append(f"language {row.language.strip()[:20]!r} not understood; ignored")
    return PreparedRow(
        row_number=row.row_number,
        household=household,
        display_name=name,
        phone=phone or normalise_phone(row.phone, default_region),
        tags=tags,
        side=normalise_label(row.side) or None,
        is_contact=row.is_contact,
        raw=row.raw,
        notes=tuple(notes),
        language=language,
    )


def prepare_rows(
    rows: Sequence[GuestInput],
    default_region: str,
    phones: Sequence[tuple[str, str | None]] | None = None,
) -> list[PreparedRow]:
    """`prepare_row` for a batch; `phones`: the rows' phones as `normalise_phones` answered."""
    if phones is None:
        return [prepare_row(row, default_region) for row in rows]
    statuses = {s.value: s for s in PhoneStatus}
    return [
        prepare_row(row, default_region, NormalisedPhone(row.phone, statuses[status], e164))
        for row, (status, e164) in zip(rows, phones, strict=True)
    ]


# --- planning one batch ------------------------------------------------------------------------


@dataclass
class KnownPerson:
    """A person as the database (or an earlier row of this batch) knows them."""

    id: uuid.UUID
    active: bool
    guest_unit_id: uuid.UUID | None
    """Their active household at the start of the batch, then as the plan moves them."""
    phone_valid: bool
    display_name: str = ""


@dataclass
class KnownUnit:
    """A household as the database (or an earlier row of this batch) knows it."""

    id: uuid.UUID
    name: str
    active: bool
    contact_person_id: uuid.UUID | None
    contact_phone_valid: bool
    side: str | None
    new: bool = False
    changed: bool = False
    language: str | None = None


@dataclass(frozen=True)
class RowResult:
    """What happened to one row."""

    row_number: int
    outcome: ImportRowOutcome
    phone_e164: str | None
    person_id: uuid.UUID | None
    message: str
    raw: Mapping[str, str]


@dataclass(frozen=True)
class NewPerson:
    """A person to insert."""

    id: uuid.UUID
    display_name: str
    raw_phone: str
    phone_status: PhoneStatus
    phone_e164: str | None


@dataclass(frozen=True)
class PersonUpdate:
    """New values for an existing person (always made active)."""

    id: uuid.UUID
    display_name: str
    raw_phone: str


@dataclass
class BatchPlan:
    """Every write one batch needs, in an order the database accepts."""

    new_persons: list[NewPerson] = field(default_factory=list)
    person_updates: dict[uuid.UUID, PersonUpdate] = field(default_factory=dict)
    new_units: list[KnownUnit] = field(default_factory=list)
    changed_units: list[KnownUnit] = field(default_factory=list)
    closed_memberships: list[uuid.UUID] = field(default_factory=list)
    """Persons whose active membership (at batch start) must be closed."""
    opened_memberships: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    """(guest unit id, person id) memberships to open."""
    tag_links: set[tuple[uuid.UUID, str]] = field(default_factory=set)
    units_to_repair: set[uuid.UUID] = field(default_factory=set)
    """Households that lost a member: re-check their contact and whether any member is left."""
    rows: list[RowResult] = field(default_factory=list)


_ID_BATCH = 4096


class _IdPool(threading.local):
    """Each thread's ids not handed out yet (imports plan batches in threads, and one generator
    must never run in two threads at once)."""

    ids: Iterator[uuid.UUID] = iter(())


_id_pool = _IdPool()


def new_id() -> uuid.UUID:
    """A random (version 4) UUID, like uuid.uuid4(), from random bytes read 4,096 ids at a time
    (one os.urandom call per id was a tenth of an import's planning time)."""
    for value in _id_pool.ids:
        return value
    pool = os.urandom(16 * _ID_BATCH)
    _id_pool.ids = (uuid.UUID(bytes=pool[i : i + 16], version=4) for i in range(0, len(pool), 16))
    return next(_id_pool.ids)


def person_key(display_name: str) -> str:
    """How people without a valid phone are matched inside their household."""
    return display_name.casefold()


@dataclass
class ImportPlanner:
    """Plans import batches; remembers across batches which households got an explicit contact."""

    explicit_contacts: set[uuid.UUID] = field(default_factory=set)

    def plan(
        self,
        rows: Sequence[PreparedRow],
        persons_by_phone: dict[str, KnownPerson],
        units_by_name: dict[str, KnownUnit],
        units_by_id: dict[uuid.UUID, KnownUnit],
        unphoned_by_unit: dict[tuple[uuid.UUID, str], KnownPerson],
    ) -> BatchPlan:
        """Decide every row's outcome and the writes (the lookups are updated in place)."""
        batch = _Batch(self, persons_by_phone, units_by_name, units_by_id, unphoned_by_unit)
        for row in rows:
            batch.apply(row)
        return batch.finish()


@dataclass
class _Batch:
    planner: ImportPlanner
    persons_by_phone: dict[str, KnownPerson]
    units_by_name: dict[str, KnownUnit]
    units_by_id: dict[uuid.UUID, KnownUnit]
    unphoned_by_unit: dict[tuple[uuid.UUID, str], KnownPerson]
    plan: BatchPlan = field(default_factory=BatchPlan)
    start_unit: dict[uuid.UUID, uuid.UUID | None] = field(default_factory=dict)
    touched: dict[uuid.UUID, KnownPerson] = field(default_factory=dict)

    def apply(self, row: PreparedRow) -> None:
        if row.phone.status is PhoneStatus.MISSING:
            self._result(row, ImportRowOutcome.SKIPPED_NO_PHONE, None, "the row has no phone")
            return
        unit, unit_was_inactive = self._unit(row)
        person, existed, person_was_inactive = self._person(row, unit)
        self._move(person, unit)
        self._designate_contact(unit, person, row.is_contact)
        if row.tags:
            self.plan.tag_links.update((unit.id, tag) for tag in row.tags)
        if row.side and row.side != unit.side:
            unit.side, unit.changed = row.side, True
        if row.language and row.language != unit.language:
            unit.language, unit.changed = row.language, True
        if not row.phone.valid:
            outcome, note = (
                ImportRowOutcome.WARNING_MALFORMED_PHONE,
                f"malformed phone {row.phone.raw!r}",
            )
        elif not existed:
            outcome, note = ImportRowOutcome.CREATED, ""
        elif person_was_inactive or unit_was_inactive:
            outcome, note = ImportRowOutcome.REACTIVATED, ""
        else:
            outcome, note = ImportRowOutcome.UPDATED, ""
        self._result(row, outcome, person.id, note)

    def _result(
        self, row: PreparedRow, outcome: ImportRowOutcome, person: uuid.UUID | None, note: str
    ) -> None:
        message = "; ".join(n for n in (note, *row.notes) if n)
        self.plan.rows.append(
            RowResult(row.row_number, outcome, row.phone.e164, person, message, row.raw)
        )

    def _unit(self, row: PreparedRow) -> tuple[KnownUnit, bool]:
        unit = self.units_by_name.get(row.household)
        if unit is None:
            unit = KnownUnit(
                id=new_id(),
                name=row.household,
                active=True,
                contact_person_id=None,
                contact_phone_valid=False,
                side=None,
                new=True,
            )
            self.units_by_name[unit.name] = self.units_by_id[unit.id] = unit
            self.plan.new_units.append(unit)
            return unit, False
        was_inactive = not unit.active
        if was_inactive:
            unit.active, unit.changed = True, True
        return unit, was_inactive

    def _person(self, row: PreparedRow, unit: KnownUnit) -> tuple[KnownPerson, bool, bool]:
        phone = row.phone
        if phone.e164 is not None:
            person = self.persons_by_phone.get(phone.e164)
        else:
            person = self.unphoned_by_unit.get((unit.id, person_key(row.display_name)))
        if person is None:
            person = KnownPerson(
                id=new_id(), active=True, guest_unit_id=None, phone_valid=phone.valid
            )
            self.start_unit[person.id] = None
            self.plan.new_persons.append(
                NewPerson(person.id, row.display_name, phone.raw, phone.status, phone.e164)
            )
            self._remember(person, row, unit)
            return person, False, False
        was_inactive = not person.active
        person.active = True
        self.start_unit.setdefault(person.id, person.guest_unit_id)
        # Applied after this batch's inserts, so it also covers a person an earlier row created.
        self.plan.person_updates[person.id] = PersonUpdate(
            person.id, row.display_name or person.display_name, phone.raw
        )
        self._remember(person, row, unit)
        return person, True, was_inactive

    def _remember(self, person: KnownPerson, row: PreparedRow, unit: KnownUnit) -> None:
        person.display_name = row.display_name or person.display_name
        self.touched[person.id] = person
        if row.phone.e164 is not None:
            self.persons_by_phone[row.phone.e164] = person
        else:
            self.unphoned_by_unit[(unit.id, person_key(person.display_name))] = person

    def _move(self, person: KnownPerson, unit: KnownUnit) -> None:
        old_id = person.guest_unit_id
        if old_id == unit.id:
            return
        person.guest_unit_id = unit.id
        if old_id is None:
            return
        self.plan.units_to_repair.add(old_id)
        old = self.units_by_id.get(old_id)
        if old is not None and old.contact_person_id == person.id:
            old.contact_person_id, old.contact_phone_valid, old.changed = None, False, True

    def _designate_contact(self, unit: KnownUnit, person: KnownPerson, is_contact: bool) -> None:
        if unit.id in self.planner.explicit_contacts:
            return
        if is_contact:
            self.planner.explicit_contacts.add(unit.id)
        elif unit.contact_person_id is not None and (
            unit.contact_phone_valid or not person.phone_valid
        ):
            return
        if unit.contact_person_id != person.id:
            unit.contact_person_id, unit.changed = person.id, True
        unit.contact_phone_valid = person.phone_valid

    def finish(self) -> BatchPlan:
        plan = self.plan
        for person in self.touched.values():
            start = self.start_unit.get(person.id)
            if person.guest_unit_id == start:
                continue
            if start is not None:
                plan.closed_memberships.append(person.id)
            if person.guest_unit_id is not None:
                plan.opened_memberships.append((person.guest_unit_id, person.id))
        plan.changed_units = [u for u in self.units_by_id.values() if u.changed and not u.new]
        return plan
