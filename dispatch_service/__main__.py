"""`python -m dispatch_service`: run the dispatch gRPC server."""

from __future__ import annotations

import asyncio

from common.observability import configure_logging
from common.runtime import tune_garbage_collection, use_event_loop
from common.settings import load_settings
from dispatch_service.server import serve
from dispatch_service.settings import DispatchSettings


def main() -> None:
    """Load and validate settings (exit 2 when they are wrong), then serve until SIGTERM."""
    settings = load_settings(DispatchSettings)
    configure_logging("dispatch", settings.log_level)
    tune_garbage_collection()
    use_event_loop(settings.event_loop)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
