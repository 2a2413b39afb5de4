"""Composition root of the send worker process (`python -m dispatch_service.dispatcher`).

The worker owns one engine, one provider HTTP client and one :class:`Dispatcher`; it serves no
API. Operators see it through the standard gRPC health service on DISPATCHER_HEALTH_LISTEN
(SERVING while the database answers, NOT_SERVING from the moment it starts to stop) and through
Prometheus metrics on DISPATCHER_METRICS_LISTEN. SIGTERM or SIGINT stops new claims, lets
in-flight sends finish (a provider timeout and a margin), writes their results and exits 0.

API replicas and workers scale independently: run N API servers (`python -m dispatch_service`)
and K workers against one Postgres; they coordinate only through it (row claims, leases, the
shared send schedule). A small install may instead embed the worker in the API server
(DISPATCHER_ENABLED=true).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from grpc import aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from common.db.engine import make_engine, make_sessions
from common.observability import start_metrics_server
from dispatch_service.bootstrap import build_sending_provider, finish_dispatcher, pool_size
from dispatch_service.dispatcher.worker import Dispatcher, DispatcherConfig
from dispatch_service.server import track_database_health
from dispatch_service.settings import WorkerSettings

log = logging.getLogger(__name__)

HEALTH_NAME = "invites.v1.Dispatcher"
"""The health service name the worker reports under (beside the overall "")."""


def build_health_server(listen: str) -> tuple[aio.Server, HealthServicer, int]:
    """A gRPC server with only health and reflection, bound but not started."""
    server = aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(listen)
    return server, servicer, port


async def run_worker(settings: WorkerSettings) -> None:
    """Send until SIGTERM/SIGINT, then drain: NOT_SERVING, finish in-flight sends, close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = make_engine(settings.database_url, pool_size=pool_size(settings))
    sessions = make_sessions(engine)
    provider, client = build_sending_provider(settings, sessions)
    dispatcher = Dispatcher(sessions, provider, DispatcherConfig.from_settings(settings))
    server, health_servicer, port = build_health_server(settings.dispatcher_health_listen)
    await server.start()
    log.info("send worker health on %s (port %d)", settings.dispatcher_health_listen, port)
    if settings.dispatcher_metrics_listen:
        start_metrics_server(settings.dispatcher_metrics_listen)
    probe = asyncio.create_task(track_database_health(engine, health_servicer, (HEALTH_NAME,)))
    sending = asyncio.create_task(dispatcher.run(), name="dispatcher")
    await stop.wait()
    log.info("shutting down: health NOT_SERVING, no new claims, in-flight sends finish")
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    await health_servicer.enter_graceful_shutdown()
    dispatcher.stop()
    await finish_dispatcher(sending, settings)
    await server.stop(1.0)
    await client.aclose()
    await engine.dispose()
    log.info("stopped")
