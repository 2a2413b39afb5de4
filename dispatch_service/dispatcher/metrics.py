"""Prometheus metrics of the send path (default registry, served by the metrics endpoint)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENDS = Counter(
    "invites_dispatch_sends_total",
    "Provider calls by outcome class (accepted, transient, recipient_backoff, defer, terminal, "
    "halt, ambiguous) and messages not sent: released (their slot passed), throttled (their slot "
    "was handed out before a 130429 lowered the rate) or blocked at claim time (blocked).",
    ["outcome"],
)
RETRIES = Counter(
    "invites_dispatch_retries_total",
    "Messages queued again after a failed call, by retry class.",
    ["retry_class"],
)
QUEUE_DEPTH = Gauge(
    "invites_dispatch_queue_depth",
    "Queued messages of active runs (as last seen by this replica's reconciler).",
)
IN_FLIGHT = Gauge(
    "invites_dispatch_in_flight",
    "Messages this replica has claimed and not yet recorded (scheduled or in a provider call).",
)
CURRENT_RATE = Gauge(
    "invites_dispatch_rate_per_second",
    "The send rate the shared schedule hands out for a sender, as last seen by this replica.",
    ["sender"],
)
RUN_TRANSITIONS = Counter(
    "invites_dispatch_run_transitions_total",
    "Run state changes made by the send worker and its reconciler: paused (by a send answer), "
    "due (a scheduled run came due), completed. Runs paused by their template's change on Meta "
    "are counted by the API server as invites_template_runs_paused_total.",
    ["state"],
)
OUTCOME_UNKNOWN = Counter(
    "invites_dispatch_outcome_unknown_total",
    "Messages the reconciler failed as outcome_unknown after the window passed.",
)
SCHEDULE_LAPSED = Counter(
    "invites_dispatch_schedule_lapsed_seconds_total",
    "Send-schedule time a sender lost: its slots ran out before this replica's next claim for "
    "it while its run still had messages due (the replica was busy, e.g. claiming for other "
    "senders; at the sender's rate, each second is that many messages not sent). Steadily "
    "growing: run more dispatcher workers.",
    ["sender"],
)
SLOT_LATENESS = Histogram(
    "invites_dispatch_slot_lateness_seconds",
    "How late a message's send started after its slot (the process was busy); past the late "
    "start the rate's headroom allows (DISPATCH_RATE_HEADROOM; docs/dispatch.md section 4) it "
    "is released instead of sent.",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)
