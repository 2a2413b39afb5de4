"""Guest import rules: CSV header and stream reading, row preparation, the batch planner."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.vocabulary import ImportRowOutcome, PhoneStatus
from dispatch_service.domain.guests import (
    BatchPlan,
    CsvGuestReader,
    GuestInput,
    ImportPlanner,
    KnownPerson,
    KnownUnit,
    PreparedRow,
    new_id,
    parse_header,
    prepare_row,
    prepare_rows,
)
from dispatch_service.domain.phones import normalise_phones
from dispatch_service.errors import InvalidArgument
from dispatch_service.use_cases import guests as guests_use_case
from dispatch_service.use_cases.guests import RowPreparer, csv_batches

SAMPLE = (
    "Household,Name,Phone,Tags,Side,is_contact\r\n"
    '"Smith, family",Ann Smith,+1 202 555 0101,family;VIP,bride,yes\r\n'
    '"Smith, family",Bob Smith,+1 202 555 0102,,,\r\n'
    "\r\n"
    'Jones,"Zoë ""Zed""\nJones",202 555 0103,friends,groom,\r\n'
    "Lee,Kim Lee,,,,\r\n"
).encode()


def read_all(data: bytes, chunk: int = 1 << 16) -> list[GuestInput]:
    reader = CsvGuestReader()
    rows: list[GuestInput] = []
    for start in range(0, len(data), chunk):
        rows += reader.feed(data[start : start + chunk])
    return rows + reader.finish()


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in error.value.violations)


# --- header and reading ------------------------------------------------------------------------


def test_header_is_case_and_space_insensitive() -> None:
    assert parse_header([" Name", "PHONE ", "household"]) == ("name", "phone", "household")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (["name", "phone", "email"], "unknown column 'email'"),
        (["name", "phone", "Phone"], "column 'phone' appears more than once"),
        (["household", "name"], "missing required column 'phone'"),
    ],
)
def test_bad_headers_are_rejected(header: list[str], problem: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        parse_header(header)
    assert problem in violations(error)


def test_reader_parses_quotes_multiline_fields_and_blank_lines() -> None:
    rows = read_all(SAMPLE)
    assert [r.row_number for r in rows] == [1, 2, 3, 4]
    assert rows[0].household == "Smith, family"
    assert rows[0].tags == ("family", "VIP")
    assert rows[0].is_contact
    assert rows[2].name == 'Zoë "Zed"\nJones'
    assert rows[3].phone == ""
    assert rows[0].raw["phone"] == "+1 202 555 0101"


def test_a_quote_inside_an_unquoted_field_is_a_character_as_the_csv_module_reads_it() -> None:
    # A lone quote used to make the quote count odd: every later line was held in memory as
    # one open record, and the whole file was refused at its end ("never closed").
    data = b'name,phone\nDan O"Neil,+12025550101\n' + b"".join(
        b"Guest %d,+1202555%04d\n" % (n, n) for n in range(2, 5000)
    )
    rows = read_all(data, chunk=4096)
    assert len(rows) == 4999
    assert rows[0].name == 'Dan O"Neil'
    assert rows[-1].name == "Guest 4999"


def test_a_quoted_field_left_open_is_refused_where_it_opened_without_reading_on() -> None:
    data = b'name,phone\nAnn,1\n"Bob,2\n' + b"Guest,+12025550101\n" * 10_000
    reader = CsvGuestReader()
    chunks = [data[start : start + 4096] for start in range(0, len(data), 4096)]

    def feed_all() -> None:
        for chunk in chunks:
            reader.feed(chunk)

    with pytest.raises(InvalidArgument) as error:
        feed_all()
    assert "line 3: a quoted field opened there is still open" in violations(error)
    assert sum(map(len, reader._pending)) <= 70 * 1024  # never more than the bound held


@settings(max_examples=60, deadline=None)
@given(chunk=st.integers(min_value=1, max_value=len(SAMPLE)))
def test_any_chunking_reads_the_same_rows(chunk: int) -> None:
    assert read_all(SAMPLE, chunk) == read_all(SAMPLE)


def test_byte_order_mark_is_ignored() -> None:
    rows = read_all(b"\xef\xbb\xbfname,phone\nAnn,+12025550101\n")
    assert rows[0].name == "Ann"


def test_last_line_without_newline_is_read() -> None:
    assert [r.name for r in read_all(b"name,phone\nAnn,1\nBob,2")] == ["Ann", "Bob"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"name,phone\nAnn,\xff\xfe\n", "not UTF-8 (invalid byte at offset 15)"),
        (b"name,phone\nZo\xc3", "not UTF-8"),
        (b'name,phone\n"Ann,1\nBob,2\n', "line 2: a quoted field is never closed"),
        (b"name,phone\nAnn,1,extra\n", "line 2: 3 fields, the header has 2"),
        (b"name,phone\nAnn\n", "line 2: 1 fields, the header has 2"),
        (b'name,phone\n"Ann"x,1\n', "line 2: malformed CSV"),
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"name,email\n", "unknown column 'email'"),
    ],
)
def test_broken_files_are_rejected_with_a_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        read_all(data, chunk=4)
    assert problem in violations(error)


def test_unknown_is_contact_value_is_a_row_note() -> None:
    (row,) = read_all(b"name,phone,is_contact\nAnn,1,maybe\n")
    assert not row.is_contact
    assert "is_contact 'maybe' not understood" in row.notes[0]


# --- preparing rows ----------------------------------------------------------------------------


def test_prepare_row_cleans_names_tags_and_side() -> None:
    row = prepare_row(
        GuestInput(
            row_number=1,
            name="  Ann   Smith ",
            phone="202-555-0101",
            household=" The  Smiths ",
            tags=(" Family", "family", "", "VIP "),
            side=" Bride ",
        ),
        "US",
    )
    assert (row.display_name, row.household, row.tags, row.side) == (
        "Ann Smith",
        "The Smiths",
        ("family", "vip"),
        "bride",
    )
    assert row.phone.e164 == "+12025550101"


def test_a_guest_without_household_is_their_own_household() -> None:
    row = prepare_row(GuestInput(row_number=1, name="Ann", phone="+12025550101"), "US")
    assert row.household == "Ann"
    assert "household of their own" in row.notes[0]


# --- planning ----------------------------------------------------------------------------------


def prepared(
    n: int, household: str, name: str, phone: str, *, contact: bool = False, tags: str = ""
) -> PreparedRow:
    return prepare_row(
        GuestInput(
            row_number=n,
            name=name,
            phone=phone,
            household=household,
            is_contact=contact,
            tags=tuple(tags.split(";")),
        ),
        "US",
    )


class Lookups:
    def __init__(self) -> None:
        self.persons: dict[str, KnownPerson] = {}
        self.units: dict[str, KnownUnit] = {}
        self.unphoned: dict[tuple[uuid.UUID, str], KnownPerson] = {}

    def unit(self, name: str, *, active: bool = True) -> KnownUnit:
        unit = KnownUnit(uuid.uuid4(), name, active, None, False, None)
        self.units[name] = unit
        return unit

    def person(self, phone: str, unit: KnownUnit | None, *, active: bool = True) -> KnownPerson:
        person = KnownPerson(uuid.uuid4(), active, unit.id if unit else None, True, "Old")
        self.persons[phone] = person
        if unit is not None and unit.contact_person_id is None:
            unit.contact_person_id, unit.contact_phone_valid = person.id, True
        return person

    def plan(self, planner: ImportPlanner, *rows: PreparedRow) -> BatchPlan:
        by_id = {u.id: u for u in self.units.values()}
        return planner.plan(list(rows), self.persons, self.units, by_id, self.unphoned)


def test_new_rows_create_households_people_and_memberships() -> None:
    world = Lookups()
    plan = world.plan(
        ImportPlanner(),
        prepared(1, "Smiths", "Ann", "+12025550101", tags="family"),
        prepared(2, "Smiths", "Bob", "bad phone"),
        prepared(3, "Smiths", "Cy", ""),
    )
    assert [r.outcome for r in plan.rows] == [
        ImportRowOutcome.CREATED,
        ImportRowOutcome.WARNING_MALFORMED_PHONE,
        ImportRowOutcome.SKIPPED_NO_PHONE,
    ]
    (unit,) = plan.new_units
    ann, bob = plan.new_persons
    assert (ann.phone_status, bob.phone_status) == (PhoneStatus.VALID, PhoneStatus.MALFORMED)
    assert (bob.phone_e164, bob.raw_phone) == (None, "bad phone")
    assert unit.contact_person_id == ann.id
    assert sorted(plan.opened_memberships) == sorted([(unit.id, ann.id), (unit.id, bob.id)])
    assert plan.tag_links == {(unit.id, "family")}
    assert plan.rows[1].message == "malformed phone 'bad phone'"
    assert plan.rows[2].person_id is None


def test_same_phone_twice_in_one_file_is_one_person_updated() -> None:
    world = Lookups()
    plan = world.plan(
        ImportPlanner(),
        prepared(1, "A", "Ann", "+12025550101"),
        prepared(2, "A", "Annie", "(202) 555-0101"),
    )
    assert [r.outcome for r in plan.rows] == [ImportRowOutcome.CREATED, ImportRowOutcome.UPDATED]
    assert len(plan.new_persons) == 1
    person_id = plan.rows[0].person_id
    assert person_id is not None
    assert person_id == plan.rows[1].person_id
    assert plan.person_updates[person_id].display_name == "Annie"


def test_existing_people_are_updated_or_reactivated() -> None:
    world = Lookups()
    home = world.unit("Home")
    world.person("+12025550101", home)
    world.person("+12025550102", home, active=False)
    closed = world.unit("Closed", active=False)
    world.person("+12025550103", closed)
    plan = world.plan(
        ImportPlanner(),
        prepared(1, "Home", "Ann", "+12025550101"),
        prepared(2, "Home", "Bob", "+12025550102"),
        prepared(3, "Closed", "Cy", "+12025550103"),
    )
    assert [r.outcome for r in plan.rows] == [
        ImportRowOutcome.UPDATED,
        ImportRowOutcome.REACTIVATED,
        ImportRowOutcome.REACTIVATED,
    ]
    assert closed.active
    assert closed in plan.changed_units
    assert not plan.new_persons
    assert not plan.opened_memberships


def test_moving_a_person_closes_the_old_membership_and_repairs_the_old_household() -> None:
    world = Lookups()
    old = world.unit("Old")
    ann = world.person("+12025550101", old)
    plan = world.plan(ImportPlanner(), prepared(1, "New", "Ann", "+12025550101"))
    (new,) = plan.new_units
    assert plan.closed_memberships == [ann.id]
    assert plan.opened_memberships == [(new.id, ann.id)]
    assert plan.units_to_repair == {old.id}
    assert old.contact_person_id is None
    assert old in plan.changed_units
    assert new.contact_person_id == ann.id


def test_first_explicit_contact_wins_across_batches() -> None:
    world = Lookups()
    planner = ImportPlanner()
    first = world.plan(
        planner,
        prepared(1, "A", "Ann", "+12025550101"),
        prepared(2, "A", "Bob", "+12025550102", contact=True),
    )
    (unit,) = first.new_units
    bob = first.rows[1].person_id
    assert unit.contact_person_id == bob
    world.units["A"] = unit
    second = world.plan(planner, prepared(3, "A", "Cy", "+12025550103", contact=True))
    assert unit.contact_person_id == bob
    assert unit not in second.changed_units


def test_a_valid_phone_replaces_a_malformed_contact_but_not_a_valid_one() -> None:
    world = Lookups()
    plan = world.plan(
        ImportPlanner(),
        prepared(1, "A", "Ann", "nope"),
        prepared(2, "A", "Bob", "+12025550102"),
        prepared(3, "A", "Cy", "+12025550103"),
    )
    (unit,) = plan.new_units
    assert unit.contact_person_id == plan.rows[1].person_id


def test_people_without_a_valid_phone_are_matched_by_name_in_their_household() -> None:
    world = Lookups()
    home = world.unit("Home")
    known = KnownPerson(uuid.uuid4(), True, home.id, False, "Ann")
    world.unphoned[(home.id, "ann")] = known
    plan = world.plan(ImportPlanner(), prepared(1, "Home", "ANN", "12"))
    assert plan.rows[0].person_id == known.id
    assert plan.rows[0].outcome is ImportRowOutcome.WARNING_MALFORMED_PHONE
    assert not plan.new_persons


# --- spreadsheet dialects ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        # semicolon-separated (European Excel); tags keep their own semicolons inside quotes
        'name;phone;household;tags\r\nAnn Smith;+1 202 555 0101;Smith;"family;vip"\r\n',
        # an Excel separator hint as the first line
        'sep=,\r\nname,phone,household,tags\r\nAnn Smith,+1 202 555 0101,Smith,"family;vip"\r\n',
        "sep=;\nname;phone;household;tags\nAnn Smith;+1 202 555 0101;Smith;family;vip\n".replace(
            "family;vip", '"family;vip"'
        ),
        # tab-separated
        "name\tphone\thousehold\ttags\nAnn Smith\t+1 202 555 0101\tSmith\tfamily;vip\n",
        # trailing empty columns in the header and the rows
        'name,phone,household,tags,,\r\nAnn Smith,+1 202 555 0101,Smith,"family;vip",,\r\n',
        # rows padded with empty fields past a clean header
        'name,phone,household,tags\r\nAnn Smith,+1 202 555 0101,Smith,"family;vip",,,\r\n',
    ],
)
def test_spreadsheet_dialects_are_read(data: str) -> None:
    (row,) = read_all(data.encode())
    assert (row.name, row.phone, row.household) == ("Ann Smith", "+1 202 555 0101", "Smith")
    assert row.tags == ("family", "vip")


def test_a_row_with_extra_non_empty_fields_is_still_refused() -> None:
    with pytest.raises(InvalidArgument) as error:
        read_all(b"name,phone\r\nAnn,+1 202 555 0101,surprise\r\n")
    assert "3 fields, the header has 2" in violations(error)


def test_line_numbers_count_the_separator_hint() -> None:
    with pytest.raises(InvalidArgument) as error:
        read_all(b"sep=;\nname;phone\nAnn;+1 202 555 0101;x\n")
    assert "line 3:" in violations(error)


def test_rows_prepared_with_phones_normalised_apart_equal_rows_prepared_whole() -> None:
    rows = [
        GuestInput(row_number=n, name=f"Guest {n}", phone=phone, household="H")
        for n, phone in enumerate(["+1 202 555 0101", "(202) 555-0102", "12-ab", "", "  "], 1)
    ]
    phones = normalise_phones([r.phone for r in rows], "US")
    assert [status for status, _ in phones] == ["valid", "valid", "malformed", "missing", "missing"]
    assert prepare_rows(rows, "US", phones) == prepare_rows(rows, "US")


def test_new_ids_are_distinct_random_uuids_across_refills() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


def test_new_ids_drawn_by_several_threads_at_once_are_distinct() -> None:
    # Imports plan their batches in threads: two imports at once draw ids together.
    def draw() -> list[uuid.UUID]:
        return [new_id() for _ in range(20_000)]

    with ThreadPoolExecutor(4) as pool:
        drawn = [i for ids in pool.map(lambda _: draw(), range(4)) for i in ids]
    assert len(set(drawn)) == len(drawn) == 80_000


# --- the import's worker process ---------------------------------------------------------------


async def test_rows_read_a_slice_at_a_time_are_the_rows_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guests_use_case, "SLICE_BYTES", 3)  # splits "ë" and the quoted fields

    async def chunks() -> AsyncIterator[bytes]:
        yield SAMPLE[:50]
        yield SAMPLE[50:]

    batches = [b async for b in csv_batches(chunks(), max_bytes=1 << 20, batch_rows=2)]
    assert [len(b) for b in batches] == [2, 2]
    assert [r for b in batches for r in b] == read_all(SAMPLE)


async def test_the_import_worker_prepares_rows_as_this_process_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guests_use_case, "SLICE_ROWS", 1)  # each row's phone from its own slice
    rows = read_all(SAMPLE)
    preparer = RowPreparer("US", worker_from_rows=len(rows))
    try:
        here = await preparer.prepare(rows)  # a full batch: starts the worker, prepared here
        assert preparer.batches_in_worker == 0
        deadline = asyncio.get_running_loop().time() + 30
        while not preparer.batches_in_worker:  # prepared here until the worker has started
            assert asyncio.get_running_loop().time() < deadline, "the worker never started"
            await asyncio.sleep(0.05)
            prepared = await preparer.prepare(rows)
        assert prepared == here
        assert [r.phone.e164 for r in prepared] == [
            "+12025550101",
            "+12025550102",
            "+12025550103",
            None,
        ]
    finally:
        preparer.close()


async def test_the_import_worker_loads_the_phone_parser_and_not_the_service() -> None:
    rows = read_all(SAMPLE)
    preparer = RowPreparer("US", worker_from_rows=len(rows))
    try:
        await preparer.prepare(rows)  # starts the worker
        assert preparer._executor is not None
        # A builtin, so that asking imports nothing more into the worker.
        ask = preparer._executor.submit(eval, "sorted(__import__('sys').modules)")
        loaded = set(await asyncio.wrap_future(ask))
        assert "phonenumbers" in loaded
        heavy = {"sqlalchemy", "psycopg", "grpc", "dispatch_service.use_cases.guests"}
        assert not {m for m in loaded if m in heavy or m.split(".")[0] in heavy}
    finally:
        preparer.close()


async def test_a_small_import_starts_no_worker() -> None:
    rows = read_all(SAMPLE)
    before = set(multiprocessing.active_children())  # an earlier test's worker may still exit
    preparer = RowPreparer("US", worker_from_rows=len(rows) + 1)
    try:
        assert await preparer.prepare(rows) == prepare_rows(rows, "US")
        await asyncio.sleep(0.2)
        await preparer.prepare(rows)
        assert preparer.batches_in_worker == 0
        assert set(multiprocessing.active_children()) <= before
    finally:
        preparer.close()
