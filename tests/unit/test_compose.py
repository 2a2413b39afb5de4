"""docker-compose.yml stays correct without a Docker engine: services, dependencies, variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_SECRETS = {
    "dispatch": {"DISPATCH_BACKEND_TOKENS", "DISPATCH_INGESTOR_TOKEN", "WHATSAPP_ACCESS_TOKEN"},
    "dispatcher": {"WHATSAPP_ACCESS_TOKEN"},
    "webhook": {"DISPATCH_INGESTOR_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN"},
    "console": {"DISPATCH_BACKEND_TOKENS"},
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_and_the_sandbox_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "postgres",
        "migrate",
        "dispatch",
        "dispatcher",
        "webhook",
        "console",
        "sandbox",
    } <= set(services)
    assert services["dispatcher"]["command"] == ["python", "-m", "dispatch_service.dispatcher"]
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert "healthcheck" in services["postgres"]
    assert services["migrate"]["restart"] == "no"


@pytest.mark.parametrize("service", ["dispatch", "dispatcher", "webhook"])
def test_apps_wait_for_a_healthy_database_and_a_finished_migration(
    compose: dict[str, Any], service: str
) -> None:
    depends = compose["services"][service]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in compose["services"][service]


@pytest.mark.parametrize("service", ["dispatch", "dispatcher", "webhook", "console"])
def test_required_secrets_have_no_default(compose: dict[str, Any], service: str) -> None:
    environment = compose["services"][service]["environment"]
    for name in REQUIRED_SECRETS[service]:
        assert re.fullmatch(rf"\$\{{{name}:\?.+\}}", environment[name]), name


def test_every_variable_the_apps_read_is_documented(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    for service in ("dispatch", "dispatcher", "webhook", "console"):
        for name in compose["services"][service]["environment"]:
            assert f"`{name}`" in readme or name in readme, name


def test_the_image_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)


def test_the_image_holds_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("common", "dispatch_service", "webhook_service", "sandbox", "cli"):
        assert f"COPY {package} {package}" in dockerfile, package
    assert "COPY console_service console_service" in dockerfile
