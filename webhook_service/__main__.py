"""`python -m webhook_service`: run the webhook ingestor."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from common.observability import configure_logging
from common.runtime import tune_garbage_collection, use_event_loop
from common.settings import host_port, load_settings
from webhook_service.app import create_app
from webhook_service.processes import supervise
from webhook_service.settings import WebhookSettings

log = logging.getLogger("webhook_service")


def main() -> None:
    """Load and validate settings (exit 2 when they are wrong), then serve until SIGTERM/SIGINT."""
    settings = load_settings(WebhookSettings)
    configure_logging("webhook", settings.log_level)
    if settings.webhook_processes > 1:
        sys.exit(supervise(settings.webhook_processes))
    tune_garbage_collection()
    use_event_loop(settings.event_loop)
    host, port = host_port(settings.webhook_listen)
    # run_app handles SIGTERM/SIGINT: stop accepting, let requests finish, then run cleanup_ctx.
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        shutdown_timeout=settings.webhook_grace_seconds,
        access_log=None,
        reuse_port=settings.webhook_reuse_port or None,
        # called once the socket is bound: the log says where the ingestor listens
        print=lambda _banner: log.info("webhook ingestor listening on %s", settings.webhook_listen),
    )


if __name__ == "__main__":
    main()
