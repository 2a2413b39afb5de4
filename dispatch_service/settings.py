"""The dispatch service's configuration, read from the environment and validated at start-up."""

from __future__ import annotations

from pydantic import Field, field_validator

from common.settings import Secret, SecretList, ServiceSettings


class DispatchSettings(ServiceSettings):
    """Everything the dispatch service needs. Field names are the environment variables."""

    dispatch_listen: str = "127.0.0.1:50051"
    """DISPATCH_LISTEN: host:port the gRPC server binds."""

    dispatch_metrics_listen: str = "127.0.0.1:9101"
    """DISPATCH_METRICS_LISTEN: host:port for Prometheus metrics; empty disables them."""

    dispatch_backend_tokens: SecretList
    """DISPATCH_BACKEND_TOKENS: backend clients' bearer token(s), comma-separated (rotation)."""

    dispatch_ingestor_token: Secret
    """DISPATCH_INGESTOR_TOKEN: the bearer token only the webhook ingestor sends (ApplyStatus)."""

    dispatch_tls_cert_file: str = ""
    """DISPATCH_TLS_CERT_FILE: PEM certificate chain; with the key file, the server speaks TLS."""

    dispatch_tls_key_file: str = ""
    """DISPATCH_TLS_KEY_FILE: PEM private key for DISPATCH_TLS_CERT_FILE."""

    dispatch_tls_client_ca_file: str = ""
    """DISPATCH_TLS_CLIENT_CA_FILE: CA bundle; when set, clients need a certificate (mTLS)."""

    dispatch_grace_seconds: float = Field(default=10.0, ge=0)
    """DISPATCH_GRACE_SECONDS: how long in-flight calls may finish after SIGTERM."""

    whatsapp_api_base_url: str = "https://graph.facebook.com"
    """WHATSAPP_API_BASE_URL: the Graph API origin (the sandbox's URL locally)."""

    whatsapp_api_version: str = "v21.0"
    """WHATSAPP_API_VERSION: the pinned Graph API version, for example v21.0."""

    whatsapp_access_token: Secret
    """WHATSAPP_ACCESS_TOKEN: the system-user token used to send messages."""

    whatsapp_phone_number_id: str = Field(min_length=1)
    """WHATSAPP_PHONE_NUMBER_ID: the default sender phone number id for new workspaces."""

    precheck_ttl_seconds: int = Field(default=3600, ge=60)
    """PRECHECK_TTL_SECONDS: how long a precheck may be started after it was made."""

    @field_validator("whatsapp_api_version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if not value.startswith("v"):
            raise ValueError("must look like v21.0")
        return value
