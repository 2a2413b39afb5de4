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
