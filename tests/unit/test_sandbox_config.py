"""Settings: secrets required, env prefix, CLI flags, and a start-up error that leaks nothing."""

import pytest

from sandbox.config import SandboxSettings
from sandbox.main import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    names = (
        "ACCESS_TOKEN",
        "APP_SECRET",
        "CALLBACK_URL",
        "LISTEN",
        "CONTROL_ENABLED",
        "EVENT_LOOP",
    )
    for name in names:
        monkeypatch.delenv(f"SANDBOX_{name}", raising=False)


def test_settings_come_from_sandbox_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_ACCESS_TOKEN", "test-access-token")
    monkeypatch.setenv("SANDBOX_APP_SECRET", "test-app-secret")
    monkeypatch.setenv("SANDBOX_CONTROL_ENABLED", "true")
    monkeypatch.setenv("SANDBOX_LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("SANDBOX_CALLBACK_URL", "")

    settings = SandboxSettings()

    assert settings.app_secret.get_secret_value() == "test-app-secret"
    assert settings.control_enabled is True
    assert (settings.host, settings.port) == ("127.0.0.1", 9999)
    assert settings.callback_url is None
    assert "test-app-secret" not in repr(settings)


@pytest.mark.parametrize(
    "overrides",
    [{"listen": "8090"}, {"listen": "localhost:http"}, {"callback_url": "ftp://x"}],
)
def test_bad_values_are_rejected(overrides: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="1 validation error"):
        SandboxSettings(access_token="t", app_secret="s", **overrides)  # type: ignore[arg-type]


def test_missing_secret_stops_start_up_naming_the_variable_without_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SANDBOX_ACCESS_TOKEN", "test-access-token")

    assert main(["--listen", "127.0.0.1:0"]) == 2

    err = capsys.readouterr().err
    assert "SANDBOX_APP_SECRET" in err
    assert "SANDBOX_ACCESS_TOKEN" not in err
    assert "test-access-token" not in err


def test_bad_scenario_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SANDBOX_ACCESS_TOKEN", "test-access-token")
    monkeypatch.setenv("SANDBOX_APP_SECRET", "test-app-secret")

    assert main(["--scenario", "/nonexistent/scenario.json"]) == 2
    assert "cannot load scenario" in capsys.readouterr().err


def test_the_sandbox_runs_on_uvloop_unless_told_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_ACCESS_TOKEN", "token")
    monkeypatch.setenv("SANDBOX_APP_SECRET", "secret")
    assert SandboxSettings().event_loop == "uvloop"
    monkeypatch.setenv("SANDBOX_EVENT_LOOP", "asyncio")
    assert SandboxSettings().event_loop == "asyncio"
    monkeypatch.setenv("SANDBOX_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        SandboxSettings()
