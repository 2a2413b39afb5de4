"""Structured logging and the Prometheus endpoint, shared by both services."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import start_http_server

from common.settings import host_port

# Extra attributes copied into each log line when a call passes them (`log.info(..., extra={...})`).
CONTEXT_FIELDS = ("run_id", "message_id", "receipt_id", "workspace_id", "method", "count")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message and known context ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                line[name] = str(getattr(record, name))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send JSON log lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def start_metrics_server(listen: str) -> None:
    """Serve the default Prometheus registry on `host:port` (a background thread)."""
    host, port = host_port(listen)
    start_http_server(port, addr=host)
