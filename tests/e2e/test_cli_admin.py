"""The admin CLI end to end: a real dispatch service process, `invites` as a subprocess.

This is the issue's closing check: from nothing, bootstrap a workspace, import the sample CSV and
see per-row outcomes, create an event with an audience, register a template and block a number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.conftest import CliResult, InvitesCli, ServiceProcess

SAMPLE = Path(__file__).resolve().parents[2] / "cli" / "data" / "sample_guests.csv"


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}\n{result.stdout}\n{result.stderr}"
    return result


def as_json(result: CliResult) -> Any:
    return json.loads(ok(result).stdout)


def json_lines(result: CliResult) -> list[Any]:
    return [json.loads(line) for line in ok(result).stdout.splitlines() if line.strip()]


def query(process: ServiceProcess, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(process.env["DATABASE_URL"]) as conn:
        return conn.execute(sql).fetchall()


def bootstrap(cli: InvitesCli) -> str:
    result = ok(
        cli("bootstrap", "--name", "Smith wedding", "--region", "US", "--admin-name", "Sam")
    )
    assert "workspace created" in result.stdout
    match = re.search(r"^export INVITES_ACTOR=([0-9a-f-]{36})$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return match.group(1)


def test_a_new_user_goes_from_nothing_to_an_invitable_event(
    invites_cli: InvitesCli, dispatch_process: ServiceProcess
) -> None:
    actor = bootstrap(invites_cli)

    def cli(*args: str) -> CliResult:
        return invites_cli(*args, actor=actor)

    imported = ok(cli("guests", "import", str(SAMPLE)))
    assert "imported" in imported.stdout
    assert "warning_malformed_phone" in imported.stdout  # the rows needing attention are shown
    assert "every row: invites guests rows" in imported.stdout
    run_id = re.search(r"import run (\S+):", imported.stdout).group(1)  # type: ignore[union-attr]
    again = ok(cli("guests", "import", str(SAMPLE)))
    assert "already imported under this key (nothing changed)" in again.stdout
    assert query(dispatch_process, "SELECT count(*) FROM import_run") == [(1,)]

    rows = json_lines(cli("guests", "rows", run_id, "--json"))
    outcomes = [r["outcome"] for r in rows]
    assert len(rows) == 130
    assert outcomes.count("IMPORT_ROW_OUTCOME_WARNING_MALFORMED_PHONE") == 3
    assert outcomes.count("IMPORT_ROW_OUTCOME_SKIPPED_NO_PHONE") == 2
    assert outcomes.count("IMPORT_ROW_OUTCOME_UPDATED") == 1
    skipped = json_lines(cli("guests", "rows", run_id, "--outcome", "skipped_no_phone", "--json"))
    assert [int(r["row_number"]) for r in skipped] == [125, 127]  # int64: JSON strings
    skipped_table = ok(cli("guests", "rows", run_id, "--outcome", "skipped_no_phone"))
    assert f"import run {run_id}, finished" in skipped_table.stdout
    assert "125" in skipped_table.stdout
    assert "127" in skipped_table.stdout
    households = json_lines(cli("guests", "list", "--json"))
    assert len(households) == 54
    assert "households" in ok(cli("guests", "list")).stdout
    assert query(dispatch_process, "SELECT count(*) FROM person WHERE phone_status = 'malformed'")[
        0
    ] == (3,)

    event = as_json(
        cli(
            "events",
            "create",
            "Sam & Alex's wedding",
            "--starts-at",
            "2031-06-01T15:00:00Z",
            "--location",
            "Old Town Hall",
            "--json",
        )
    )["event"]
    audience = as_json(
        cli("audience", "set", event["event_id"], "--mode", "tags", "--tag", "family", "--json")
    )
    family = [h for h in households if "family" in h["tags"]]
    assert int(audience["resolved_guest_unit_count"]) == len(family) > 0
    shown = ok(cli("audience", "get", event["event_id"]))
    assert f"resolves to: {len(family)} households" in shown.stdout

    template = as_json(
        cli(
            "templates",
            "register",
            "event_invitation",
            "--language",
            "en_US",
            "--category",
            "marketing",
            "--variable",
            "guest_name",
            "--variable",
            "event_name",
            "--status",
            "approved",
            "--json",
        )
    )["template"]
    assert template["status"] == "TEMPLATE_STATUS_APPROVED"
    listed = ok(cli("templates", "list"))
    assert "event_invitation" in listed.stdout

    blocked = ok(cli("dnm", "add", "+1 555 010 0050", "--reason", "asked not to be messaged"))
    assert "+15550100050 is now on the do-not-message list" in blocked.stdout
    repeat = ok(cli("dnm", "add", "(555) 010-0050"))
    assert "was already on the list" in repeat.stdout
    entries = json_lines(cli("dnm", "list", "--json"))
    assert [(e["phone_e164"], e["source"]) for e in entries] == [
        ("+15550100050", "DNM_SOURCE_OPERATOR")
    ]
    assert "+15550100050" in ok(cli("dnm", "list")).stdout
    actions = [a for (a,) in query(dispatch_process, "SELECT action FROM audit_entry ORDER BY id")]
    assert actions == [
        "workspace.create",
        "guests.import",
        "event.create",
        "audience.set",
        "template.register",
        "dnm.add",
    ]


def test_members_roles_and_errors_through_the_cli(
    invites_cli: InvitesCli, dispatch_process: ServiceProcess, tmp_path: Path
) -> None:
    actor = bootstrap(invites_cli)
    viewer = as_json(
        invites_cli("members", "add", "Val", "--role", "viewer", "--json", actor=actor)
    )
    viewer_id = viewer["member"]["member_id"]
    members = ok(invites_cli("members", "list", actor=viewer_id))
    assert "Sam" in members.stdout
    assert "viewer" in members.stdout

    denied = invites_cli("dnm", "add", "+12025550101", actor=viewer_id)
    assert denied.code == 3
    assert "PERMISSION_DENIED" in denied.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text("household,name,phone,email\nA,Ann,+12025550101,a@example.com\n")
    rejected = invites_cli("guests", "import", str(bad), actor=actor)
    assert rejected.code == 3
    assert "INVALID_ARGUMENT" in rejected.stderr
    assert "unknown column 'email'" in rejected.stderr
    assert query(dispatch_process, "SELECT count(*) FROM person") == [(0,)]

    missing = invites_cli("audience", "get", "00000000-0000-0000-0000-000000000000", actor=actor)
    assert (missing.code, "NOT_FOUND" in missing.stderr) == (3, True)
    ok(invites_cli("members", "remove", viewer_id, actor=actor))
    gone = invites_cli("members", "list", actor=viewer_id)
    assert (gone.code, "UNAUTHENTICATED" in gone.stderr) == (3, True)
