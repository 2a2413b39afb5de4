"""Configuration shared by both services: the database URL, secret checks and a fail-fast loader.

Each service has one pydantic-settings class (dispatch_service/settings.py,
webhook_service/settings.py) built in its `main()` and passed down. Required secrets have no
defaults; a missing, empty or placeholder secret stops start-up with a message that names the
variable and never prints a value.
"""

from __future__ import annotations

import sys
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.runtime import EventLoop

PLACEHOLDERS = frozenset({"changeme", "change-me", "placeholder", "secret", "todo", "xxx", "none"})


def _real_secret(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value().strip()
    if not raw:
        raise ValueError("must not be empty")
    if raw.lower() in PLACEHOLDERS or raw.startswith("<"):
        raise ValueError("is a placeholder, not a real secret")
    return value


Secret = Annotated[SecretStr, AfterValidator(_real_secret)]
"""A required secret: present, non-empty and not a placeholder. Never printed."""


def _secret_list(value: SecretStr) -> SecretStr:
    parts = [p.strip() for p in value.get_secret_value().split(",")]
    for part in parts:
        _real_secret(SecretStr(part))
    return value


SecretList = Annotated[SecretStr, AfterValidator(_secret_list)]
"""Comma-separated secrets (several may be valid at once during a rotation)."""


def split_secrets(value: SecretStr) -> list[str]:
    """The individual secrets of a `SecretList`."""
    return [p.strip() for p in value.get_secret_value().split(",") if p.strip()]


def public_callback_url(name: str, url: str) -> str:
    """A URL a provider can call back (Twilio: http(s), a host without underscores), stripped;
    raises ValueError naming `name` otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL when Twilio is configured")
    if "_" in parts.hostname:
        raise ValueError(f"{name}: Twilio refuses host names with underscores")
    return url.strip()


def sqlalchemy_url(url: str) -> str:
    """Turn a libpq-style `postgresql://` URL into SQLAlchemy's psycopg 3 form."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("must be a postgresql:// URL")


def host_port(listen: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 in brackets) into its parts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class ServiceSettings(BaseSettings):
    """Base of both services' settings: read from the environment (and a .env file if present)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str
    """DATABASE_URL: the Postgres database both services share (postgresql://...)."""

    log_level: str = "INFO"
    """LOG_LEVEL: the logging level (DEBUG, INFO, WARNING, ERROR)."""

    event_loop: EventLoop = "uvloop"
    """EVENT_LOOP: the process's event loop, `uvloop` or `asyncio` (common/runtime.py)."""


S = TypeVar("S", bound=BaseModel)


def describe_errors(error: ValidationError) -> str:
    """A start-up message naming each bad variable and why, without any value."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in item["loc"]).upper() or "settings"
        reason = "is required" if item["type"] == "missing" else item["msg"]
        lines.append(f"  {name}: {reason}")
    return "configuration error:\n" + "\n".join(lines)


def load_settings(cls: type[S]) -> S:
    """Build `cls` from the environment or exit(2) with a message that names what is wrong."""
    try:
        return cls()
    except ValidationError as error:
        print(describe_errors(error), file=sys.stderr)
        raise SystemExit(2) from None
