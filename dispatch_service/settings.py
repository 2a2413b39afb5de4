"""The dispatch service's configuration, read from the environment and validated at start-up.

Two processes read it: the API server (`python -m dispatch_service`, :class:`DispatchSettings`)
and the send worker (`python -m dispatch_service.dispatcher`, :class:`WorkerSettings`). What both
need to send (database, provider, rate limit, retries) is :class:`SendSettings`; the API's
credentials and listen address are not required of a worker.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from common.settings import Secret, SecretList, ServiceSettings, public_callback_url
from dispatch_service.domain.send_rate import MIN_MESSAGES_PER_SECOND


class SendSettings(ServiceSettings):
    """What sending needs, in the worker and in an API server that embeds it. Field names are
    the environment variables."""

    whatsapp_api_base_url: str = "https://graph.facebook.com"
    """WHATSAPP_API_BASE_URL: the Graph API origin (the sandbox's URL locally)."""

    whatsapp_api_version: str = "v26.0"
    """WHATSAPP_API_VERSION: the pinned Graph API version (docs/operations.md: moving it)."""

    whatsapp_access_token: Secret
    """WHATSAPP_ACCESS_TOKEN: the system-user token used to send messages."""

    twilio_auth_token: SecretList | None = None
    """TWILIO_AUTH_TOKEN: Twilio auth token(s), comma-separated; the first signs API calls.
    Unset: this deployment sends nothing through Twilio (Twilio senders' runs pause)."""

    twilio_api_base_url: str = "https://api.twilio.com"
    """TWILIO_API_BASE_URL: the Twilio REST API origin (the sandbox's URL locally)."""

    twilio_status_callback_url: str = ""
    """TWILIO_STATUS_CALLBACK_URL: the public URL of the ingestor's /webhooks/twilio, sent as
    every message's StatusCallback (required with TWILIO_AUTH_TOKEN; no underscores in the host)."""

    whatsapp_parameter_format: Literal["positional", "named"] = "positional"
    """WHATSAPP_PARAMETER_FORMAT: `positional` ({{1}} templates) or `named` (send each body
    parameter with its variable name as `parameter_name`)."""

    dispatch_rate_per_second: float = Field(default=80.0, ge=MIN_MESSAGES_PER_SECOND, le=1000)
    """DISPATCH_RATE_PER_SECOND: messages per second per sender phone number id, across all
    replicas together (Meta's default is 80; up to 1,000 after Meta's throughput upgrade; at
    least 3: below that the schedule leaves no time to start a send, and none would go out)."""

    dispatch_rate_headroom: float = Field(default=0.1, ge=0.05, le=0.5)
    """DISPATCH_RATE_HEADROOM: fraction of the rate kept free so that late starts and network
    jitter never push a one-second window over the provider's cap (0.1 schedules 90% of the
    rate; at least 0.05, and at least 3 messages a second are always kept free)."""

    dispatch_rate_recovery_per_second: float = Field(default=0.05, gt=0, le=1)
    """DISPATCH_RATE_RECOVERY_PER_SECOND: after a 130429 halved the rate, how fast (fraction of
    the full rate per second) it climbs back."""

    dispatch_throttle_backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    """DISPATCH_THROTTLE_BACKOFF_SECONDS: pause of a sender's schedule after a 130429."""

    dispatch_schedule_horizon_seconds: float = Field(default=0.4, gt=0, le=5)
    """DISPATCH_SCHEDULE_HORIZON_SECONDS: how far ahead a replica claims send slots, counted
    from its claim lead (its recent claim and mark round trips, at most 0.25 s); bounds how
    many claimed-but-unsent messages a killed replica can leave behind (rate * (lead +
    horizon)). A claim must reach past the replica's next claim for the same sender, which on
    a busy worker serving several senders comes after their claims too: at 0.2 s three senders
    at 1,000/s on one worker sent 735-803/s each instead of 900 (docs/dispatch.md §4)."""

    dispatch_max_attempts: int = Field(default=5, ge=1, le=20)
    """DISPATCH_MAX_ATTEMPTS: provider calls per message before a transient error is final
    (failed, retries_exhausted)."""

    dispatch_backoff_base_seconds: float = Field(default=2.0, gt=0)
    """DISPATCH_BACKOFF_BASE_SECONDS: first retry waits up to this long (full jitter), doubling
    per attempt."""

    dispatch_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    """DISPATCH_BACKOFF_CAP_SECONDS: the longest wait between two attempts."""

    dispatch_marketing_limit_defer_seconds: float = Field(default=86_400.0, ge=0)
    """DISPATCH_MARKETING_LIMIT_DEFER_SECONDS: how long a message waits after Meta's per-user
    marketing cap (131049); Meta says at least 24 h."""

    dispatch_lease_seconds: float = Field(default=30.0, gt=0)
    """DISPATCH_LEASE_SECONDS: how long past its slot a claimed message stays leased to the
    replica that claimed it (added to the provider timeout)."""

    dispatch_outcome_unknown_seconds: float = Field(default=900.0, gt=0)
    """DISPATCH_OUTCOME_UNKNOWN_SECONDS: a message still `sending` this long after its call
    (and no longer leased) is failed with reason outcome_unknown; webhooks usually resolve it
    long before."""

    dispatch_provider_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """DISPATCH_PROVIDER_TIMEOUT_SECONDS: read/write timeout of one provider call; a timeout
    is an ambiguous outcome (never re-sent)."""

    dispatch_provider_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    """DISPATCH_PROVIDER_CONNECT_TIMEOUT_SECONDS: connect timeout (safe to retry)."""

    dispatch_outage_threshold: int = Field(default=20, ge=1, le=10000)
    """DISPATCH_OUTAGE_THRESHOLD: provider failures in a row (HTTP 5xx, timeouts, refused or
    dropped connections) that one replica sees for a sender before it declares a provider
    outage: no new sends for that sender but one probe message at a time."""

    dispatch_outage_probe_seconds: float = Field(default=5.0, gt=0, le=3600)
    """DISPATCH_OUTAGE_PROBE_SECONDS: wait before the first probe of an outage; each probe
    that fails doubles it."""

    dispatch_outage_probe_cap_seconds: float = Field(default=60.0, gt=0, le=3600)
    """DISPATCH_OUTAGE_PROBE_CAP_SECONDS: the longest wait between two probes."""

    dispatcher_concurrency: int = Field(default=1000, ge=1, le=10000)
    """DISPATCHER_CONCURRENCY: messages one replica may hold at once: waiting for their send
    slot, in a provider call, or waiting for their result to be written. 1,000 msg/s with
    200 ms provider latency keeps up to ~800 busy (claim lead + slot horizon + call + write)."""

    dispatch_http_connections: int = Field(default=400, ge=1, le=5000)
    """DISPATCH_HTTP_CONNECTIONS: the most provider connections one replica opens (calls in
    flight at once: rate x latency, 200 at 1,000 msg/s and 200 ms)."""

    dispatcher_mark_lead_seconds: float = Field(default=0.01, gt=0, le=0.15)
    """DISPATCHER_MARK_LEAD_SECONDS: the least time before its slot a message is marked
    `sending` (the worker marks earlier when marks take longer; 0.15 s is the most it ever
    does, dispatcher.worker.MAX_MARK_LEAD_SECONDS). Marking earlier batches more messages into
    each mark and keeps a saturated worker from missing slots: three senders at 1,000/s on
    one worker of the 2-core machine sent 1,024-1,193 msg/s at 0.15 against 770-1,013, with
    half the slots released unsent (docs/dispatch.md §10). The price is what a crash leaves
    ambiguous: a killed worker leaves up to this long of its sends `sending` without a
    request (docs/dispatch.md §5)."""

    dispatcher_claim_batch_size: int = Field(default=400, ge=1, le=5000)
    """DISPATCHER_CLAIM_BATCH_SIZE: most messages claimed in one transaction (at least the
    horizon's worth at the sender's rate, or the batch, not the horizon, bounds a claim)."""

    dispatcher_poll_seconds: float = Field(default=0.2, gt=0, le=10)
    """DISPATCHER_POLL_SECONDS: idle wait before looking for due messages again."""

    dispatcher_flush_seconds: float = Field(default=0.02, gt=0, le=5)
    """DISPATCHER_FLUSH_SECONDS: results are written in batches at least this often."""

    dispatcher_reconcile_seconds: float = Field(default=1.0, gt=0, le=300)
    """DISPATCHER_RECONCILE_SECONDS: how often runs are completed and unknown outcomes failed."""

    @model_validator(mode="after")
    def _twilio_complete(self) -> SendSettings:
        if self.twilio_auth_token is not None:
            self.twilio_status_callback_url = public_callback_url(
                "TWILIO_STATUS_CALLBACK_URL", self.twilio_status_callback_url
            )
        return self

    @field_validator("whatsapp_api_version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if not value.startswith("v"):
            raise ValueError("must look like v26.0")
        return value


class DispatchSettings(SendSettings):
    """The API server (`python -m dispatch_service`)."""

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

    whatsapp_phone_number_id: str = Field(min_length=1)
    """WHATSAPP_PHONE_NUMBER_ID: the default sender phone number id for new workspaces."""

    changes_sequence_seconds: float = Field(default=0.2, gt=0, le=60)
    """CHANGES_SEQUENCE_SECONDS: how often committed changes get their stream cursor (readers
    of WatchChanges/ListChanges also number pending changes themselves)."""

    changes_retention_seconds: float = Field(default=7 * 24 * 3600, ge=60)
    """CHANGES_RETENTION_SECONDS: how long the change log keeps a change (default 7 days); a
    cursor older than that is refused with FAILED_PRECONDITION (CURSOR_EXPIRED)."""

    callbacks_enabled: bool = True
    """CALLBACKS_ENABLED: run the signed-callback deliverer in this process (docs/changes.md)."""

    callback_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    """CALLBACK_POLL_SECONDS: how often the deliverer looks for new changes to POST."""

    callback_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """CALLBACK_TIMEOUT_SECONDS: how long one POST to a receiver may take."""

    callback_max_backoff_seconds: float = Field(default=300.0, ge=1, le=3600)
    """CALLBACK_MAX_BACKOFF_SECONDS: the longest wait between retries to a failing receiver."""

    callback_dead_letter_seconds: float = Field(default=24 * 3600, ge=1)
    """CALLBACK_DEAD_LETTER_SECONDS: after a receiver failed this long, the changes it refuses
    are dead-lettered (logged, skipped) and delivery goes on."""

    whatsapp_waba_id: str = ""
    """WHATSAPP_WABA_ID: the default WhatsApp Business Account id for new workspaces (whose
    templates SyncTemplates reads); empty: set per workspace."""

    precheck_ttl_seconds: int = Field(default=3600, ge=60)
    """PRECHECK_TTL_SECONDS: how long a precheck may be started after it was made."""

    import_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    """IMPORT_MAX_BYTES: the largest guest CSV ImportGuests accepts (default 50 MiB); a larger
    file is refused as a whole (INVALID_ARGUMENT) and nothing of it is stored."""

    dispatcher_enabled: bool = False
    """DISPATCHER_ENABLED: also run the send worker inside the API server (small installs);
    by default the API only serves, and `python -m dispatch_service.dispatcher` sends."""


class WorkerSettings(SendSettings):
    """The send worker (`python -m dispatch_service.dispatcher`)."""

    dispatcher_health_listen: str = "127.0.0.1:50052"
    """DISPATCHER_HEALTH_LISTEN: host:port of the worker's gRPC health service (SERVING while
    the database answers)."""

    dispatcher_metrics_listen: str = "127.0.0.1:9103"
    """DISPATCHER_METRICS_LISTEN: host:port for the worker's Prometheus metrics; empty disables."""

    dispatcher_nice: int = Field(default=0, ge=0, le=19)
    """DISPATCHER_NICE: the nice value the worker process runs at, at least (0: as everything
    else; a worker started nicer stays so). Above 0, API replicas or Postgres sharing the
    worker's CPUs run first when both want a core. On the 2-core bench machine that did not
    lower the GetRunStatus p99 measurably, while a CPU-bound worker (three senders) sent
    10-15% less at 10, because its late sends give their slots up (docs/dispatch.md §10)."""
