"""`python -m console_service` (or `invites console`): run the operator console."""

from __future__ import annotations

import logging

from aiohttp import web

from common.observability import configure_logging
from common.settings import host_port, load_settings
from console_service.app import create_app
from console_service.settings import ConsoleSettings

log = logging.getLogger("console_service")


def main() -> None:
    """Load and validate settings (exit 2 when they are wrong), then serve until SIGTERM/SIGINT."""
    settings = load_settings(ConsoleSettings)
    configure_logging("console", settings.log_level)
    host, port = host_port(settings.console_listen)
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        shutdown_timeout=5,
        access_log=None,
        print=lambda _banner: log.info("console listening on http://%s", settings.console_listen),
    )


if __name__ == "__main__":
    main()
