"""Sandbox settings, read from ``SANDBOX_*`` environment variables (and CLI flags in ``main``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.runtime import EventLoop


class SandboxSettings(BaseSettings):
    """Where the sandbox listens, who it pretends to be, and where its webhooks go.

    Behaviour (latency, errors, webhook timing) lives in the scenario, not here.
    """

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore", frozen=True)

    listen: str = "127.0.0.1:8090"
    """``host:port`` to serve the Graph API (and control routes, when enabled) on."""

    access_token: SecretStr = Field(min_length=1)
    """The bearer token senders must present; anything else gets error 190 (HTTP 401)."""

    app_secret: SecretStr = Field(min_length=1)
    """Key of the HMAC-SHA256 in ``X-Hub-Signature-256`` on every webhook POST."""

    twilio_auth_token: SecretStr | None = None
    """The Twilio auth token: basic-auth password of the Messages API and key of the
    X-Twilio-Signature on status callbacks. Unset: the sandbox does not play Twilio."""

    callback_url: str | None = None
    """Webhook URL (e.g. ``http://127.0.0.1:8080/webhooks/whatsapp``); unset = no webhooks."""

    scenario: Path | None = None
    """Scenario file (``.json`` or ``.toml``) read once at start-up; unset = defaults."""

    control_enabled: bool = False
    """Mount the ``/_sandbox/*`` control API. Off by default: it can rewrite behaviour."""

    phone_number_id: str | None = None
    """If set, only this phone number id is accepted in the send URL (others get error 100)."""

    display_phone_number: str = "15550783881"
    """``metadata.display_phone_number`` in webhooks."""

    waba_id: str = "102290129340398"
    """``entry[].id`` in webhooks: the WhatsApp Business Account id."""

    seed: int | None = None
    """Overrides the scenario's seed for every random decision."""

    webhook_timeout_seconds: float = Field(5.0, gt=0)
    """Timeout of one webhook POST; a timeout counts as not acknowledged (redelivered)."""

    webhook_concurrency: int = Field(8, ge=1)
    """Webhook POSTs in flight at once; more due events wait (and batch up)."""

    max_pending_webhooks: int = Field(1_000_000, ge=1)
    """Bound on scheduled plus held webhook events; beyond it new events are dropped and counted."""

    event_loop: EventLoop = "uvloop"
    """The process's event loop, ``uvloop`` or ``asyncio`` (as the services: common/runtime.py).
    The sandbox shares the machine with what it measures, so every microsecond it spends per
    request is taken from the worker and Postgres in the benches."""

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8090")
        return value

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # an empty variable means "unset"
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def host(self) -> str:
        """Host part of ``listen``."""
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])
