"""The webhook ingestor's configuration, read from the environment and validated at start-up."""

from __future__ import annotations

from pydantic import Field, model_validator

from common.settings import Secret, SecretList, ServiceSettings, public_callback_url


class WebhookSettings(ServiceSettings):
    """Everything the ingestor needs. Field names are the environment variables."""

    webhook_listen: str = "127.0.0.1:8080"
    """WEBHOOK_LISTEN: host:port the HTTP server binds."""

    webhook_processes: int = Field(default=1, ge=1, le=64)
    """WEBHOOK_PROCESSES: ingestor processes serving WEBHOOK_LISTEN together, for machines with
    more cores (webhook_service/processes.py); 1: this process serves alone."""

    webhook_reuse_port: bool = False
    """WEBHOOK_REUSE_PORT: bind WEBHOOK_LISTEN with SO_REUSEPORT, so that other ingestor
    processes can bind it too and the kernel spreads connections over them (set for the
    processes WEBHOOK_PROCESSES starts)."""

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

    twilio_auth_token: SecretList | None = None
    """TWILIO_AUTH_TOKEN: Twilio auth token(s) for X-Twilio-Signature, comma-separated
    (rotation). Unset: POST /webhooks/twilio is not served."""

    twilio_webhook_url: str = ""
    """TWILIO_WEBHOOK_URL: the public URL Twilio calls for /webhooks/twilio, exactly as given
    to Twilio (the signature covers it; required with TWILIO_AUTH_TOKEN)."""

    webhook_max_body_bytes: int = Field(default=3_500_000, ge=1024)
    """WEBHOOK_MAX_BODY_BYTES: larger POST bodies get 413 (Meta sends up to 3 MB)."""

    webhook_grace_seconds: float = Field(default=10.0, ge=0)
    """WEBHOOK_GRACE_SECONDS: how long in-flight requests may finish on shutdown."""

    webhook_forward_batch_receipts: int = Field(default=200, ge=1, le=10_000)
    """WEBHOOK_FORWARD_BATCH_RECEIPTS: at most this many receipts per ApplyStatus call."""

    webhook_forward_batch_updates: int = Field(default=2_000, ge=1, le=10_000)
    """WEBHOOK_FORWARD_BATCH_UPDATES: stop adding receipts to a call past this many updates
    (a single receipt is never split; Meta batches at most 1,000 updates per POST)."""

    webhook_forward_linger_seconds: float = Field(default=0.002, ge=0, le=1)
    """WEBHOOK_FORWARD_LINGER_SECONDS: how long the forwarder waits after a receipt arrives so
    that others can join its ApplyStatus call (fewer, larger calls; adds this much lag)."""

    webhook_forward_concurrency: int = Field(default=3, ge=1, le=64)
    """WEBHOOK_FORWARD_CONCURRENCY: ApplyStatus calls the forwarder keeps in flight at once.
    A call alternates between the dispatch service's Python and Postgres, so a third one keeps
    both busier during a burst: 50 statuses per POST applied faster with 3 than with 2 in 23 of
    32 alternating pairs (median +5.8%; the cores busy 1.70 of 2 instead of 1.61, the CPU per
    status unchanged); 4 was no faster than 2 (docs/status-ingestion.md §7)."""

    webhook_forward_deadline_seconds: float = Field(default=10.0, gt=0)
    """WEBHOOK_FORWARD_DEADLINE_SECONDS: the deadline of every ApplyStatus call."""

    webhook_forward_attempts: int = Field(default=3, ge=1, le=10)
    """WEBHOOK_FORWARD_ATTEMPTS: calls per fresh batch before leaving it to the sweeper
    (transient errors only, with exponential backoff and jitter)."""

    webhook_forward_backoff_seconds: float = Field(default=0.2, gt=0)
    """WEBHOOK_FORWARD_BACKOFF_SECONDS: the first retry's backoff; it doubles per attempt."""

    webhook_forward_queue_limit: int = Field(default=5_000, ge=1)
    """WEBHOOK_FORWARD_QUEUE_LIMIT: fresh receipts waiting in memory; beyond it (or while calls
    to the dispatch service fail) they wait in the database for the sweeper instead."""

    webhook_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    """WEBHOOK_SWEEP_INTERVAL_SECONDS: how often pending receipts are looked for and
    re-forwarded (after a crash, or while the dispatch service was down)."""

    webhook_sweep_min_age_seconds: float = Field(default=60.0, ge=0)
    """WEBHOOK_SWEEP_MIN_AGE_SECONDS: the sweeper leaves receipts younger than this to the
    forwarder of the ingestor that stored them (unless calls are failing: then it takes all).
    Keep it above attempts x deadline so a slow call is not duplicated by a sweep."""

    @model_validator(mode="after")
    def _twilio_complete(self) -> WebhookSettings:
        if self.twilio_auth_token is not None:
            url = public_callback_url("TWILIO_WEBHOOK_URL", self.twilio_webhook_url)
            self.twilio_webhook_url = url.split("?", 1)[0]
        return self
