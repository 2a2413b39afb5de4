"""The first hour of a new user, as frictions that got in the way (issue 17), each pinned by the
real `invites` CLI against real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli.exit_codes import EXIT_RUN_FAILURES
from common.generated.invites.v1 import types_pb2 as types
from tests.e2e.conftest import BACKEND_TOKEN, InvitesCli, ServiceProcess, StartService
from tests.e2e.dispatch_stack import DispatchStack, scenario
from tests.e2e.test_cli_admin import as_json
from tests.integration.dispatch_support import seed_world


def _bootstrap(invites_cli: InvitesCli) -> str:
    created = as_json(invites_cli("bootstrap", "--region", "US", "--admin-name", "Sam", "--json"))
    return str(created["admin"]["member_id"])


def test_a_large_csv_refused_while_uploading_reports_the_validation_error(
    invites_cli: InvitesCli, tmp_path: Path
) -> None:
    # The server refuses on the header while the CLI still streams megabytes: the CLI must say
    # why (INVALID_ARGUMENT and the violation), never "INTERNAL: Internal error from Core".
    actor = _bootstrap(invites_cli)
    big = tmp_path / "big.csv"
    rows = "".join(f"g{i}@example.com,Guest {i},+1202555{i % 10000:04d}\n" for i in range(250_000))
    big.write_text("email,name,phone\n" + rows)
    assert big.stat().st_size > 10_000_000
    for attempt in range(5):
        result = invites_cli("guests", "import", str(big), "--key", f"k{attempt}", actor=actor)
        assert result.code == 3, result.stderr
        assert "INVALID_ARGUMENT" in result.stderr, result.stderr
        assert "unknown column 'email'" in result.stderr


def _import_households(invites_cli: InvitesCli, actor: str, tmp_path: Path, count: int) -> None:
    guests = tmp_path / "guests.csv"
    guests.write_text(
        "household;name;phone\n"
        + "".join(f"House {i:05d};Guest {i};+1202555{i:04d}\n" for i in range(count))
    )
    result = invites_cli("guests", "import", str(guests), "--json", actor=actor)
    assert result.code == 0, result.stderr
    assert int(json.loads(result.stdout)["import_run"]["created"]) == count


def test_json_lines_through_a_closed_pipe_and_wide_tables_off_a_terminal(
    invites_cli: InvitesCli, tmp_path: Path, dispatch_process: ServiceProcess
) -> None:
    actor = _bootstrap(invites_cli)
    _import_households(invites_cli, actor, tmp_path, 1500)  # a semicolon-separated file

    env = {
        **dispatch_process.env,
        "INVITES_TARGET": dispatch_process.env["DISPATCH_LISTEN"],
        "INVITES_TOKEN": BACKEND_TOKEN,
        "INVITES_ACTOR": actor,
    }
    env.pop("COLUMNS", None)
    # `invites guests list --json | head -1`
    listing = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "guests", "list", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None
    assert listing.stderr is not None
    first = json.loads(listing.stdout.readline())
    assert first["name"] == "House 00000"
    listing.stdout.close()
    stderr = listing.stderr.read().decode()
    listing.stderr.close()
    assert listing.wait(timeout=60) == 0
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr

    # a table written to a file keeps its width: no id is cut or wrapped at 80 columns
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "guests", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids = [
        json.loads(line)["guest_unit_id"]
        for line in invites_cli("guests", "list", "--json", actor=actor).stdout.splitlines()
    ]
    assert all(i in done.stdout for i in ids[:5])
    assert max(len(line) for line in done.stdout.splitlines()) > 80

    # --json: one object per line on every command (a list: one line per item)
    events = invites_cli("events", "list", "--json", actor=actor)
    assert events.stdout == ""  # no events yet: no lines
    invites_cli("events", "create", "Party", "--starts-at", "2031-06-01T18:00:00Z", actor=actor)
    one = invites_cli("events", "list", "--json", actor=actor).stdout.splitlines()
    assert len(one) == 1
    assert json.loads(one[0])["name"] == "Party"


def test_the_ingestor_logs_where_it_listens(webhook_process: ServiceProcess) -> None:
    assert f"webhook ingestor listening on {webhook_process.env['WEBHOOK_LISTEN']}" in (
        webhook_process.log()
    )


def test_watch_on_a_paused_run_says_paused_and_why_and_exits(
    database_url: str, start_service: StartService, stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario(account={"error_code": 190, "after_sends": 2}))
    dispatch = stack.start_dispatch("a")
    world = seed_world(database_url, [f"+1415555{n:04d}" for n in range(6)])
    run_id = stack.precheck_and_start(world)
    stack.wait_for_run(world, run_id, types.RUN_STATE_PAUSED)
    env = {
        **dispatch.env,
        "INVITES_TARGET": dispatch.env["DISPATCH_LISTEN"],
        "INVITES_TOKEN": BACKEND_TOKEN,
        "INVITES_ACTOR": str(world.viewer),
        "COLUMNS": "200",
    }
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "watch", run_id, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == EXIT_RUN_FAILURES, done.stderr
        if extra:
            last = json.loads(done.stdout.splitlines()[-1])
            assert last["status"]["run"]["state"] == "RUN_STATE_PAUSED"
            assert "190" in last["status"]["run"]["pause_reason"]
        else:
            assert "paused" in done.stdout
            assert "190" in done.stdout
            assert f"invites resume {run_id}" in done.stdout


def test_console_key_issues_a_key_for_the_actor(invites_cli: InvitesCli) -> None:
    actor = _bootstrap(invites_cli)
    issued = invites_cli("console-key", "--json", actor=actor)
    assert issued.code == 0, issued.stderr
    reply = json.loads(issued.stdout)
    assert reply["console_key"].startswith("ick_")
    assert reply["member"]["member_id"] == actor
    shown = invites_cli("console-key", actor=actor)
    assert "shown once" in shown.stdout
    assert reply["console_key"] not in shown.stdout  # a new key every time
