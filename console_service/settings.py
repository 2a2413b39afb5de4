"""The console's configuration, read from the environment and validated at start-up.

The console is a gRPC client of the dispatch service like any backend: it never reads the
database, so it needs no DATABASE_URL.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import SecretList


class ConsoleSettings(BaseSettings):
    """Everything the console needs. Field names are the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    console_listen: str = "127.0.0.1:8070"
    """CONSOLE_LISTEN: host:port the console's HTTP server binds."""

    dispatch_target: str = "127.0.0.1:50051"
    """DISPATCH_TARGET: where the dispatch service listens (gRPC target)."""

    dispatch_backend_tokens: SecretList
    """DISPATCH_BACKEND_TOKENS: the console calls with the first of these backend tokens."""

    dispatch_tls_ca_file: str = ""
    """DISPATCH_TLS_CA_FILE: CA bundle; when set, the console uses TLS to the dispatch service."""

    console_session_seconds: float = Field(default=8 * 3600, gt=0)
    """CONSOLE_SESSION_SECONDS: how long a console sign-in lasts."""

    log_level: str = "INFO"
    """LOG_LEVEL: the logging level (DEBUG, INFO, WARNING, ERROR)."""
