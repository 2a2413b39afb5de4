"""Guest imports through the real AdminService on real Postgres: outcomes, dedupe, households,
idempotency, reactivation, rejection of broken files (nothing stored), listings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from common.generated.invites.v1 import admin_pb2 as pb
from dispatch_service.domain.guests import BatchPlan, ImportPlanner
from dispatch_service.use_cases import guests as guests_use_case
from tests.integration.admin_support import (
    ADMIN,
    VIEWER,
    audit_actions,
    field_violations,
    import_csv,
    new_member,
    new_workspace,
    rows,
    rpc_error,
    scalar,
)
from tests.integration.conftest import ApiClient

Outcome = pb.ImportRowOutcome
CSV = """household,name,phone,tags,side,is_contact
Smiths,Ann Smith,+1 202 555 0101,family;VIP,bride,
Smiths,Bob Smith,(202) 555-0102,family,,yes
Smiths,Cy Smith,12,,,
Jones,Dee Jones,,friends,groom,
Jones,Eve Jones,202-555-0101,,,
,Solo Guest,+44 7700 900123,,,
"""


async def _workspace(api: ApiClient) -> tuple[str, str]:
    created = await new_workspace(api)
    return created.workspace.workspace_id, created.admin.member_id


async def _rows(api: ApiClient, actor: str, run_id: str) -> list[pb.ImportRowResult]:
    reply = await api.admin.ListImportRows(
        pb.ListImportRowsRequest(import_run_id=run_id), metadata=api.md(actor)
    )
    return list(reply.rows)


async def _units(api: ApiClient, actor: str) -> dict[str, pb.GuestUnit]:
    reply = await api.admin.ListGuestUnits(pb.ListGuestUnitsRequest(), metadata=api.md(actor))
    return {u.name: u for u in reply.guest_units}


async def test_a_csv_import_reports_every_row_outcome_and_builds_households(
    grpc_api: ApiClient,
) -> None:
    workspace_id, admin = await _workspace(grpc_api)
    reply = await import_csv(grpc_api, admin, CSV, key="first")
    run = reply.import_run
    assert reply.created
    assert (run.total_rows, run.created, run.updated, run.reactivated) == (6, 3, 1, 0)
    assert (run.warning_malformed_phone, run.skipped_no_phone) == (1, 1)
    assert run.HasField("finished_at")
    listed = await _rows(grpc_api, admin, run.import_run_id)
    assert [(r.row_number, r.outcome) for r in listed] == [
        (1, Outcome.IMPORT_ROW_OUTCOME_CREATED),
        (2, Outcome.IMPORT_ROW_OUTCOME_CREATED),
        (3, Outcome.IMPORT_ROW_OUTCOME_WARNING_MALFORMED_PHONE),
        (4, Outcome.IMPORT_ROW_OUTCOME_SKIPPED_NO_PHONE),
        (5, Outcome.IMPORT_ROW_OUTCOME_UPDATED),  # Ann's phone again, written differently
        (6, Outcome.IMPORT_ROW_OUTCOME_CREATED),
    ]
    assert listed[0].phone_e164 == "+12025550101"
    assert listed[0].person_id == listed[4].person_id
    assert "malformed phone '12'" in listed[2].message
    assert listed[3].person_id == ""

    units = await _units(grpc_api, admin)
    assert set(units) == {"Smiths", "Jones", "Solo Guest"}
    smiths = units["Smiths"]
    # Ann moved to Jones (row 5), so the Smiths keep Bob (their explicit contact) and Cy.
    assert (smiths.contact_phone_e164, smiths.side, smiths.member_count) == (
        "+12025550102",
        "bride",
        2,
    )
    assert list(smiths.tags) == ["family", "vip"]
    jones = units["Jones"]
    # Dee's row was skipped (no phone): her tag and side were not stored either.
    assert (jones.contact_phone_e164, jones.side, jones.member_count, list(jones.tags)) == (
        "+12025550101",
        "",
        1,
        [],
    )
    assert units["Solo Guest"].contact_phone_e164 == "+447700900123"

    malformed = await rows(
        grpc_api.sessions,
        "SELECT raw_phone, phone_status, phone_e164 FROM person WHERE display_name = 'Cy Smith'",
    )
    assert [tuple(r) for r in malformed] == [("12", "malformed", None)]
    identities = await scalar(grpc_api.sessions, "SELECT count(*) FROM guest_identity")
    assert identities == 3
    closed = await rows(
        grpc_api.sessions,
        "SELECT gu.name, m.active, m.left_at IS NOT NULL FROM guest_unit_membership m"
        " JOIN guest_unit gu ON gu.id = m.guest_unit_id JOIN person p ON p.id = m.person_id"
        " WHERE p.phone_e164 = '+12025550101' ORDER BY m.active",
    )
    # Within one import only the final household counts: no membership of Smiths was ever stored.
    assert [tuple(r) for r in closed] == [("Jones", True, False)]
    assert await audit_actions(grpc_api.sessions, workspace_id) == [
        "workspace.create",
        "guests.import",
    ]


async def test_the_same_idempotency_key_returns_the_first_run_and_changes_nothing(
    grpc_api: ApiClient,
) -> None:
    workspace_id, admin = await _workspace(grpc_api)
    first = await import_csv(grpc_api, admin, CSV, key="k1")
    again = await import_csv(grpc_api, admin, "name,phone\nNew Person,+12025550199\n", key="k1")
    assert not again.created
    assert again.import_run == first.import_run
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM import_run") == 1
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 4
    assert (await audit_actions(grpc_api.sessions, workspace_id)).count("guests.import") == 1


async def test_reimporting_updates_the_same_people_without_duplicates(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    await import_csv(grpc_api, admin, CSV, key="a")
    second = await import_csv(grpc_api, admin, CSV, key="b")
    run = second.import_run
    assert (run.created, run.updated, run.warning_malformed_phone, run.skipped_no_phone) == (
        0,
        4,
        1,
        1,
    )
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 4
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM guest_unit") == 3
    # Cy (malformed phone) is matched by name inside the household, not created again.
    cy = await scalar(
        grpc_api.sessions, "SELECT count(*) FROM person WHERE display_name = 'Cy Smith'"
    )
    assert cy == 1


async def test_inactive_people_and_households_seen_again_are_reactivated(
    grpc_api: ApiClient,
) -> None:
    _, admin = await _workspace(grpc_api)
    await import_csv(
        grpc_api, admin, "household,name,phone\nA,Ann,+12025550101\nB,Bo,+12025550102\n"
    )
    async with grpc_api.sessions() as session, session.begin():
        from sqlalchemy import text

        await session.execute(text("UPDATE person SET active = false WHERE display_name = 'Ann'"))
        await session.execute(text("UPDATE guest_unit SET active = false WHERE name = 'B'"))
    reply = await import_csv(
        grpc_api,
        admin,
        "household,name,phone\nA,Ann,+12025550101\nB,Bo,+12025550102\nA,Al,+12025550103\n",
    )
    listed = await _rows(grpc_api, admin, reply.import_run.import_run_id)
    assert [r.outcome for r in listed] == [
        Outcome.IMPORT_ROW_OUTCOME_REACTIVATED,
        Outcome.IMPORT_ROW_OUTCOME_REACTIVATED,
        Outcome.IMPORT_ROW_OUTCOME_CREATED,
    ]
    assert reply.import_run.reactivated == 2
    inactive = "SELECT count(*) FROM person WHERE NOT active"
    assert await scalar(grpc_api.sessions, inactive) == 0
    assert (await _units(grpc_api, admin))["B"].active


async def test_a_household_everyone_left_becomes_inactive(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    await import_csv(grpc_api, admin, "household,name,phone\nOld,Ann,+12025550101\n")
    await import_csv(grpc_api, admin, "household,name,phone\nNew,Ann,+12025550101\n")
    units = await _units(grpc_api, admin)
    assert not units["Old"].active
    assert (units["Old"].member_count, units["Old"].contact_person_id) == (0, "")
    assert units["New"].active
    memberships = await rows(
        grpc_api.sessions,
        "SELECT gu.name, m.active, m.left_at IS NOT NULL FROM guest_unit_membership m"
        " JOIN guest_unit gu ON gu.id = m.guest_unit_id ORDER BY m.active",
    )
    assert [tuple(r) for r in memberships] == [("Old", False, True), ("New", True, False)]


async def test_a_household_losing_its_contact_gets_the_next_member(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    await import_csv(
        grpc_api,
        admin,
        "household,name,phone,is_contact\nH,Ann,+12025550101,yes\nH,Bo,+12025550102,\n",
    )
    await import_csv(grpc_api, admin, "household,name,phone\nElsewhere,Ann,+12025550101\n")
    assert (await _units(grpc_api, admin))["H"].contact_phone_e164 == "+12025550102"


async def test_dedupe_and_moves_hold_across_batch_boundaries(
    grpc_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guests_use_case, "BATCH_ROWS", 2)
    _, admin = await _workspace(grpc_api)
    reply = await import_csv(
        grpc_api,
        admin,
        "household,name,phone\nA,Ann,+12025550101\nA,Bo,+12025550102\n"
        "B,Ann,+12025550101\nB,Cy,+12025550103\nA,Bo B,+12025550102\n",
    )
    listed = await _rows(grpc_api, admin, reply.import_run.import_run_id)
    assert [r.outcome for r in listed] == [
        Outcome.IMPORT_ROW_OUTCOME_CREATED,
        Outcome.IMPORT_ROW_OUTCOME_CREATED,
        Outcome.IMPORT_ROW_OUTCOME_UPDATED,
        Outcome.IMPORT_ROW_OUTCOME_CREATED,
        Outcome.IMPORT_ROW_OUTCOME_UPDATED,
    ]
    units = await _units(grpc_api, admin)
    assert (units["A"].member_count, units["A"].contact_phone_e164) == (1, "+12025550102")
    assert (units["B"].member_count, units["B"].contact_phone_e164) == (2, "+12025550101")
    active = "SELECT count(*) FROM guest_unit_membership WHERE active"
    assert await scalar(grpc_api.sessions, active) == 3


async def test_a_batch_failing_while_the_last_ones_rows_are_written_stores_nothing(
    grpc_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each batch is planned (in a thread) while the previous batch's import rows are written:
    # the third batch's planning fails with the second's rows in flight on the session.
    monkeypatch.setattr(guests_use_case, "BATCH_ROWS", 2)
    plan = ImportPlanner.plan
    calls: list[int] = []

    def failing_plan(self: ImportPlanner, *args: Any) -> BatchPlan:
        calls.append(len(calls))
        if len(calls) == 3:
            raise RuntimeError("planning failed")
        return plan(self, *args)

    monkeypatch.setattr(ImportPlanner, "plan", failing_plan)
    _, admin = await _workspace(grpc_api)
    lines = "".join(f"H{i // 2},Guest {i},+1202555{i:04d}\n" for i in range(8))
    await rpc_error(
        import_csv(grpc_api, admin, "household,name,phone\n" + lines), grpc.StatusCode.INTERNAL
    )
    assert len(calls) == 3
    for table in ("import_run", "import_row", "person", "guest_unit", "guest_identity"):
        assert await scalar(grpc_api.sessions, f"SELECT count(*) FROM {table}") == 0, table
    monkeypatch.setattr(ImportPlanner, "plan", plan)
    reply = await import_csv(grpc_api, admin, "household,name,phone\n" + lines)
    assert (reply.import_run.total_rows, reply.import_run.created) == (8, 8)
    listed = await _rows(grpc_api, admin, reply.import_run.import_run_id)
    assert [r.row_number for r in listed] == list(range(1, 9))


async def test_imports_into_two_workspaces_at_once_plan_side_by_side(
    grpc_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guests_use_case, "BATCH_ROWS", 50)
    admins = [(await _workspace(grpc_api))[1] for _ in range(2)]
    lines = "".join(f"H{i // 3},Guest {i},+1202555{i:04d}\n" for i in range(600))
    replies = await asyncio.gather(
        *(import_csv(grpc_api, a, "household,name,phone\n" + lines, chunk=256) for a in admins)
    )
    assert [(r.import_run.created, r.import_run.total_rows) for r in replies] == [(600, 600)] * 2
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 1200
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM import_row") == 1200
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM guest_unit") == 400


async def test_phones_are_normalised_with_the_workspace_region(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api, region="GB")
    reply = await import_csv(grpc_api, created.admin.member_id, "name,phone\nAnn,07700 900456\n")
    listed = await _rows(grpc_api, created.admin.member_id, reply.import_run.import_run_id)
    assert listed[0].phone_e164 == "+447700900456"


async def test_the_same_phone_in_two_workspaces_is_two_people(grpc_api: ApiClient) -> None:
    _, first = await _workspace(grpc_api)
    _, second = await _workspace(grpc_api)
    for actor in (first, second):
        reply = await import_csv(grpc_api, actor, "name,phone\nAnn,+12025550101\n", key="same")
        assert reply.import_run.created == 1
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM guest_identity") == 2


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"household,name,phone,email\nA,Ann,+12025550101,a@b.c\n", "unknown column 'email'"),
        (b"household,name\nA,Ann\n", "missing required column 'phone'"),
        (b"name,phone\nAnn,+12025550101\nBo,\xff\n", "not UTF-8"),
        (b'name,phone\nAnn,+12025550101\n"Bo,+12025550102\n', "a quoted field is never closed"),
        (b"name,phone\nAnn,+12025550101\nBo,+12025550102,extra\n", "3 fields, the header has 2"),
        (b"", "the file is empty"),
    ],
)
async def test_a_broken_file_is_rejected_whole_and_stores_nothing(
    grpc_api: ApiClient, data: bytes, problem: str
) -> None:
    _, admin = await _workspace(grpc_api)
    error = await rpc_error(import_csv(grpc_api, admin, data), grpc.StatusCode.INVALID_ARGUMENT)
    assert any(problem in v for v in field_violations(error)), field_violations(error)
    for table in ("import_run", "import_row", "person", "guest_unit", "guest_identity", "tag"):
        assert await scalar(grpc_api.sessions, f"SELECT count(*) FROM {table}") == 0, table


async def test_an_oversized_file_is_rejected_and_stores_nothing(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    limit = grpc_api.settings.import_max_bytes
    grpc_api.settings.import_max_bytes = 2048
    try:
        lines = "".join(f"Guest {i},+1202555{i:04d}\n" for i in range(200))
        error = await rpc_error(
            import_csv(grpc_api, admin, "name,phone\n" + lines, chunk=512),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    finally:
        grpc_api.settings.import_max_bytes = limit
    assert "larger than the import limit of 2048 bytes" in field_violations(error)[0]
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 0
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM import_run") == 0


async def test_the_stream_must_start_with_one_header_and_a_key(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)

    async def chunk_first() -> AsyncIterator[pb.ImportGuestsRequest]:
        yield pb.ImportGuestsRequest(chunk=b"name,phone\n")

    await rpc_error(
        grpc_api.admin.ImportGuests(chunk_first(), metadata=grpc_api.md(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    async def two_headers() -> AsyncIterator[pb.ImportGuestsRequest]:
        for _ in range(2):
            yield pb.ImportGuestsRequest(header=pb.ImportHeader(idempotency_key="k"))

    await rpc_error(
        grpc_api.admin.ImportGuests(two_headers(), metadata=grpc_api.md(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    error = await rpc_error(
        import_csv(grpc_api, admin, "name,phone\n", key=" "), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(error)[0].startswith("header.idempotency_key")
    error = await rpc_error(
        import_csv(grpc_api, admin, "name,phone\n", source=pb.IMPORT_SOURCE_MANUAL),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error)[0].startswith("header.source")
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM import_run") == 0


async def test_viewers_cannot_import(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    viewer = await new_member(grpc_api, admin, VIEWER)
    await rpc_error(import_csv(grpc_api, viewer, CSV), grpc.StatusCode.PERMISSION_DENIED)
    upsert = pb.UpsertGuestsRequest(
        idempotency_key="k", source=pb.IMPORT_SOURCE_MANUAL, rows=[pb.GuestRow(name="A", phone="1")]
    )
    await rpc_error(
        grpc_api.admin.UpsertGuests(upsert, metadata=grpc_api.md(viewer)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM import_run") == 0


async def test_admins_import_and_viewers_read(grpc_api: ApiClient) -> None:
    _, boss = await _workspace(grpc_api)
    admin = await new_member(grpc_api, boss, ADMIN)
    viewer = await new_member(grpc_api, boss, VIEWER)
    reply = await import_csv(grpc_api, admin, CSV)
    assert len(await _rows(grpc_api, viewer, reply.import_run.import_run_id)) == 6
    assert len(await _units(grpc_api, viewer)) == 3


async def test_upsert_guests_applies_the_same_rules_to_explicit_rows(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    request = pb.UpsertGuestsRequest(
        idempotency_key="contacts-1",
        source=pb.IMPORT_SOURCE_CONTACTS,
        rows=[
            pb.GuestRow(household="Lee", name="Kim", phone="+12025550111", tags=["Work"]),
            pb.GuestRow(household="Lee", name="Lou", phone="+12025550112", is_contact=True),
            pb.GuestRow(household="Lee", name="Lin", phone=""),
        ],
    )
    reply = await grpc_api.admin.UpsertGuests(request, metadata=grpc_api.md(admin))
    assert reply.created
    assert (reply.import_run.created, reply.import_run.skipped_no_phone) == (2, 1)
    assert reply.import_run.source == pb.IMPORT_SOURCE_CONTACTS
    again = await grpc_api.admin.UpsertGuests(request, metadata=grpc_api.md(admin))
    assert (again.created, again.import_run) == (False, reply.import_run)
    lee = (await _units(grpc_api, admin))["Lee"]
    assert (lee.contact_phone_e164, list(lee.tags)) == ("+12025550112", ["work"])
    stored = await rows(grpc_api.sessions, "SELECT raw FROM import_row ORDER BY row_number")
    assert stored[0].raw["tags"] == "Work"


async def test_upsert_guests_validates_its_request(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    error = await rpc_error(
        grpc_api.admin.UpsertGuests(
            pb.UpsertGuestsRequest(source=pb.IMPORT_SOURCE_CSV), metadata=grpc_api.md(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    fields = {v.split(":")[0] for v in field_violations(error)}
    assert fields == {"idempotency_key", "source", "rows"}


async def test_import_rows_page_and_filter(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    run_id = (await import_csv(grpc_api, admin, CSV)).import_run.import_run_id
    seen, token = [], ""
    while True:
        page = await grpc_api.admin.ListImportRows(
            pb.ListImportRowsRequest(import_run_id=run_id, page_size=4, page_token=token),
            metadata=grpc_api.md(admin),
        )
        seen += [r.row_number for r in page.rows]
        token = page.next_page_token
        if not token:
            break
    assert seen == [1, 2, 3, 4, 5, 6]
    problems = await grpc_api.admin.ListImportRows(
        pb.ListImportRowsRequest(
            import_run_id=run_id,
            outcomes=[
                Outcome.IMPORT_ROW_OUTCOME_WARNING_MALFORMED_PHONE,
                Outcome.IMPORT_ROW_OUTCOME_SKIPPED_NO_PHONE,
            ],
        ),
        metadata=grpc_api.md(admin),
    )
    assert [r.row_number for r in problems.rows] == [3, 4]
    await rpc_error(
        grpc_api.admin.ListImportRows(
            pb.ListImportRowsRequest(import_run_id=run_id, page_token="garbage"),
            metadata=grpc_api.md(admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_other_workspaces_import_runs_are_not_found(grpc_api: ApiClient) -> None:
    _, mine = await _workspace(grpc_api)
    _, theirs = await _workspace(grpc_api)
    run_id = (await import_csv(grpc_api, theirs, CSV)).import_run.import_run_id
    for run in (run_id, str(uuid.uuid4())):
        await rpc_error(
            grpc_api.admin.ListImportRows(
                pb.ListImportRowsRequest(import_run_id=run), metadata=grpc_api.md(mine)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    assert await _units(grpc_api, mine) == {}


async def test_guest_units_page_by_name(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    names = ["b", "a", "D", "c", "e"]
    lines = "".join(f"{n},{n},+120255501{i:02d}\n" for i, n in enumerate(names))
    await import_csv(grpc_api, admin, "household,name,phone\n" + lines)
    seen, token = [], ""
    while True:
        page = await grpc_api.admin.ListGuestUnits(
            pb.ListGuestUnitsRequest(page_size=2, page_token=token), metadata=grpc_api.md(admin)
        )
        seen += [u.name for u in page.guest_units]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["D", "a", "b", "c", "e"]  # byte order, the resolver's order too


async def test_concurrent_imports_under_one_key_make_one_run(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    replies = await asyncio.gather(
        *(import_csv(grpc_api, admin, CSV, key="same", chunk=64) for _ in range(3))
    )
    assert sorted(r.created for r in replies) == [False, False, True]
    assert len({r.import_run.import_run_id for r in replies}) == 1
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM import_run") == 1
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 4


async def test_concurrent_imports_of_the_same_people_never_duplicate_them(
    grpc_api: ApiClient,
) -> None:
    _, admin = await _workspace(grpc_api)
    replies = await asyncio.gather(*(import_csv(grpc_api, admin, CSV, chunk=64) for _ in range(3)))
    assert sorted(r.import_run.created for r in replies) == [0, 0, 3]
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 4
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM guest_unit") == 3


async def test_a_used_key_answers_without_reading_a_large_stream(grpc_api: ApiClient) -> None:
    _, admin = await _workspace(grpc_api)
    first = await import_csv(grpc_api, admin, CSV, key="big")
    large = "name,phone\n" + "".join(
        f"Guest {i},+1202555{i % 10_000:04d}\n" for i in range(150_000)
    )
    again = await import_csv(grpc_api, admin, large, key="big", chunk=64 * 1024)
    assert (again.created, again.import_run) == (False, first.import_run)
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM person") == 4


async def test_a_households_language_comes_from_the_csv_or_upsert_and_is_listed(
    grpc_api: ApiClient,
) -> None:
    _, admin = await _workspace(grpc_api)
    csv = (
        "household,name,phone,language\n"
        "Garcias,Ana Garcia,+12025550101,es-MX\n"
        "Lees,Lee,+12025550102,\n"
        "Kirks,Kirk,+12025550103,klingon\n"
    )
    run = (await import_csv(grpc_api, admin, csv, key="languages")).import_run
    listed = await _rows(grpc_api, admin, run.import_run_id)
    assert "language 'klingon' not understood; ignored" in listed[2].message
    units = await _units(grpc_api, admin)
    assert {name: u.preferred_language for name, u in units.items()} == {
        "Garcias": "es_MX",
        "Lees": "",
        "Kirks": "",
    }
    request = pb.UpsertGuestsRequest(  # a later word changes it; an empty one keeps it
        idempotency_key="languages-2",
        source=pb.IMPORT_SOURCE_MANUAL,
        rows=[
            pb.GuestRow(household="Lees", name="Lee", phone="+12025550102", language="PT"),
            pb.GuestRow(household="Garcias", name="Ana Garcia", phone="+12025550101"),
        ],
    )
    await grpc_api.admin.UpsertGuests(request, metadata=grpc_api.md(admin))
    units = await _units(grpc_api, admin)
    assert (units["Lees"].preferred_language, units["Garcias"].preferred_language) == (
        "pt",
        "es_MX",
    )
