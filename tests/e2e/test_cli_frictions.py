"""The first hour of a new user, as frictions that got in the way (issue 17), each pinned by the
real `invites` CLI against real processes."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import InvitesCli
from tests.e2e.test_cli_admin import as_json


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
