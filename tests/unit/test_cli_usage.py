"""The `invites` command's usage errors, help, and its routing of `invites sandbox`."""

from __future__ import annotations

import pytest

from cli.main import EXIT_USAGE, main


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
