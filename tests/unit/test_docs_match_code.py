"""The docs name every setting the code reads, so an operator never meets an undocumented one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from console_service.settings import ConsoleSettings
from dispatch_service.settings import DispatchSettings, WorkerSettings
from sandbox.config import SandboxSettings
from webhook_service.settings import WebhookSettings

ROOT = Path(__file__).resolve().parents[2]


def _variables(settings: type[BaseSettings]) -> list[str]:
    prefix = str(settings.model_config.get("env_prefix") or "")
    return [f"{prefix}{name}".upper() for name in settings.model_fields]


@pytest.mark.parametrize(
    ("settings", "doc"),
    [
        (DispatchSettings, "README.md"),
        (WorkerSettings, "README.md"),
        (WebhookSettings, "README.md"),
        (ConsoleSettings, "README.md"),
        (SandboxSettings, "sandbox/README.md"),
    ],
)
def test_every_setting_is_documented(settings: type[BaseSettings], doc: str) -> None:
    text = (ROOT / doc).read_text()
    missing = [name for name in _variables(settings) if f"`{name}`" not in text]
    assert not missing, f"{doc} does not document {missing}"
