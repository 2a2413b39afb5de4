"""Prometheus metrics of the provider adapters (default registry, served by the metrics endpoint).

The metric names keep their ``invites_dispatch_`` prefix: dashboards and alerts already use them.
"""

from __future__ import annotations

from prometheus_client import Histogram

PROVIDER_LATENCY = Histogram(
    "invites_dispatch_provider_latency_seconds",
    "Duration of one provider send call.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
