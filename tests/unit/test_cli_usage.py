"""The `invites` command's usage errors, help, and its routing of `invites sandbox`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.exit_codes import EXIT_USAGE
from cli.main import build_parser, main


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["launch-rockets"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["watch"])
    assert exited.value.code == EXIT_USAGE
    assert "run_id" in capsys.readouterr().err


def test_sandbox_options_reach_the_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "--help"])
    assert exited.value.code == 0
    assert "--scenario" in capsys.readouterr().out


def test_an_unreadable_ca_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "some-run", "--tls-ca-file", "/no/such/ca.pem"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--tls-ca-file" in err
    assert "Traceback" not in err


def test_an_unreadable_ca_file_from_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INVITES_TLS_CA_FILE", "/no/such/ca.pem")
    with pytest.raises(SystemExit) as exited:
        main(["status", "some-run"])
    assert exited.value.code == EXIT_USAGE
    assert "--tls-ca-file" in capsys.readouterr().err


def test_migrate_against_an_unreachable_database_says_so_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:not-to-be-shown@127.0.0.1:1/x")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "could not apply migrations" in err
    assert "Traceback" not in err
    assert "not-to-be-shown" not in err


def test_migrate_with_a_non_postgres_url_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://somewhere/db")
    assert main(["migrate"]) == EXIT_USAGE
    assert "DATABASE_URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("unset", "set_", "named"),
    [
        (
            "INVITES_TOKEN",
            {"INVITES_ACTOR": "00000000-0000-0000-0000-000000000001"},
            "INVITES_TOKEN",
        ),
        ("INVITES_ACTOR", {"INVITES_TOKEN": "some-token"}, "INVITES_ACTOR"),
    ],
)
def test_a_missing_credential_is_named_and_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unset: str,
    set_: dict[str, str],
    named: str,
) -> None:
    monkeypatch.delenv(unset, raising=False)
    for name, value in set_.items():
        monkeypatch.setenv(name, value)
    # an unreachable target: the CLI must stop before calling anything
    monkeypatch.setenv("INVITES_TARGET", "127.0.0.1:1")
    assert main(["status", "some-run"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert named in err
    assert "UNAUTHENTICATED" not in err


def test_bootstrap_needs_no_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.client import ConfigurationError, check_credentials

    monkeypatch.delenv("INVITES_ACTOR", raising=False)
    monkeypatch.setenv("INVITES_TOKEN", "some-token")
    check_credentials(build_parser().parse_args(["bootstrap", "--region", "US"]))
    with pytest.raises(ConfigurationError):
        check_credentials(build_parser().parse_args(["members", "list"]))


def test_an_unknown_flag_prints_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "some-run", "--bogus"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: invites status" in err
    assert "--bogus" in err


def test_events_update_without_a_field_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INVITES_TOKEN", "some-token")
    monkeypatch.setenv("INVITES_ACTOR", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("INVITES_TARGET", "127.0.0.1:1")
    assert main(["events", "update", "some-event"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "--name" in captured.err
    assert "updated" not in captured.out


def test_a_closed_pipe_ends_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.main

    class Parsed:
        usage_parser = None

        @staticmethod
        def handler(_args: object) -> int:
            raise BrokenPipeError

    parser = build_parser()
    monkeypatch.setattr(parser, "parse_known_args", lambda argv: (Parsed(), []))
    monkeypatch.setattr(cli.main, "build_parser", lambda: parser)
    saved = os.dup(1)
    try:
        assert main(["status", "x"]) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def test_command_modules_do_not_import_cli_main() -> None:
    root = Path(__file__).resolve().parents[2] / "cli" / "commands"
    offenders = [
        p.name for p in root.glob("*.py") if "cli.main" in p.read_text().replace("by cli.main", "")
    ]
    assert offenders == []
