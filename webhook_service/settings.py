"""The webhook ingestor's configuration, read from the environment and validated at start-up."""

from __future__ import annotations

from pydantic import Field

from common.settings import Secret, SecretList, ServiceSettings


class WebhookSettings(ServiceSettings):
    """Everything the ingestor needs. Field names are the environment variables."""

    webhook_listen: str = "127.0.0.1:8080"
    """WEBHOOK_LISTEN: host:port the HTTP server binds."""

    dispatch_target: str = "127.0.0.1:50051"
    """DISPATCH_TARGET: where the dispatch service listens (gRPC target)."""

    dispatch_ingestor_token: Secret
    """DISPATCH_INGESTOR_TOKEN: the bearer token sent to ApplyStatus."""

    dispatch_tls_ca_file: str = ""
    """DISPATCH_TLS_CA_FILE: CA bundle; when set, the ingestor uses TLS to the dispatch service."""

    whatsapp_app_secret: SecretList
    """WHATSAPP_APP_SECRET: app secret(s) for X-Hub-Signature-256, comma-separated."""

    whatsapp_verify_token: Secret
    """WHATSAPP_VERIFY_TOKEN: the token Meta echoes in the GET verification handshake."""

    webhook_max_body_bytes: int = Field(default=3_500_000, ge=1024)
    """WEBHOOK_MAX_BODY_BYTES: larger POST bodies get 413 (Meta sends up to 3 MB)."""

    webhook_grace_seconds: float = Field(default=10.0, ge=0)
    """WEBHOOK_GRACE_SECONDS: how long in-flight requests may finish on shutdown."""
