"""`python -m dispatch_service.dispatcher`: run the send worker (no API)."""

from __future__ import annotations

import asyncio

from common.observability import configure_logging
from common.runtime import run_at_nice, tune_garbage_collection, use_event_loop
from common.settings import load_settings
from dispatch_service.dispatcher.process import run_worker
from dispatch_service.settings import WorkerSettings


def main() -> None:
    """Load and validate settings (exit 2 when they are wrong), then send until SIGTERM."""
    settings = load_settings(WorkerSettings)
    configure_logging("dispatcher", settings.log_level)
    run_at_nice(settings.dispatcher_nice)  # reads first where the CPUs are shared (settings.py)
    tune_garbage_collection()
    use_event_loop(settings.event_loop)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
