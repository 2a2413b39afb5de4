"""Prometheus metrics of the ingestor (default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POSTS = Counter(
    "invites_webhook_posts_total",
    "Webhook POSTs by verdict: stored, duplicate (same body again), too_large, empty_body, "
    "signature_missing, signature_malformed, signature_mismatch, storage_error; Twilio's route "
    "also not_a_form (415) and invalid_form (400).",
    ["verdict"],
)
POST_SECONDS = Histogram(
    "invites_webhook_post_seconds",
    "Time to answer a webhook POST (verify and store).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
RECEIPTS_SETTLED = Counter(
    "invites_webhook_receipts_settled_total",
    "Receipts taken out of pending, by result: applied (everything read and applied), "
    "unreadable_items (the readable rest applied: alert), ignored (only changes that carry "
    "nothing for us: not a failure), or flagged whole (invalid_json, unknown_shape, "
    "unknown_sender: alert); by the forwarder (fresh) or the sweeper (sweep).",
    ["result", "path"],
)
ITEMS_UNREADABLE = Counter(
    "invites_webhook_unreadable_items_total",
    "Items (statuses, messages, preferences, changes) of applied receipts that could not be "
    "read; each is named with its path and reason in webhook_receipt.notes.",
)
CHANGES_IGNORED = Counter(
    "invites_webhook_ignored_total",
    "Known changes and items that carry nothing for this system, by kind (the change field, "
    "or inbound_<type> / system_<type> for messages items). Not failures.",
    ["kind"],
)
UPDATES_FORWARDED = Counter(
    "invites_webhook_updates_forwarded_total",
    "Updates ApplyStatus accepted, by kind (statuses, preferences, inbound_texts).",
    ["kind"],
)
FORWARD_CALLS = Counter(
    "invites_webhook_forward_calls_total",
    "ApplyStatus calls by result (ok, or the gRPC status code name).",
    ["result"],
)
LEFT_TO_SWEEPER = Counter(
    "invites_webhook_left_to_sweeper_total",
    "Fresh receipts not queued for forwarding because the queue was full"
    " (WEBHOOK_FORWARD_QUEUE_LIMIT receipts, or 64 MB of bodies): the sweeper forwards them,"
    " from a second old.",
)
FORWARD_LAG = Histogram(
    "invites_webhook_forward_lag_seconds",
    "From a receipt being stored to it being applied.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 3600.0),
)
UNAPPLIED = Gauge(
    "invites_webhook_unapplied_receipts",
    "Receipts still pending (as last counted by this ingestor's sweeper).",
    multiprocess_mode="livemax",  # several processes (WEBHOOK_PROCESSES) count the same table
)
OLDEST_UNAPPLIED = Gauge(
    "invites_webhook_oldest_unapplied_age_seconds",
    "Age of the oldest pending receipt (as last seen by this ingestor's sweeper).",
    multiprocess_mode="livemax",
)
