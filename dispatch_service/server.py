"""Composition root of the dispatch service: deps, the gRPC server, and a run until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db.engine import autocommit_connection
from common.generated.invites.v1 import admin_pb2, admin_pb2_grpc, dispatch_pb2, dispatch_pb2_grpc
from common.observability import start_metrics_server
from common.settings import split_secrets
from dispatch_service.bootstrap import Deps, build_deps
from dispatch_service.grpc_api.admin_servicer import AdminServiceServicer
from dispatch_service.grpc_api.dispatch_servicer import DispatchServiceServicer
from dispatch_service.grpc_api.guard import Credentials, GuardInterceptor
from dispatch_service.settings import DispatchSettings
from dispatch_service.use_cases.callbacks import CallbackConfig, run_deliverer
from dispatch_service.use_cases.changes import maintain_change_log

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    dispatch_pb2.DESCRIPTOR.services_by_name["DispatchService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)
DB_PROBE_SECONDS = 2.0
MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The largest request the server reads (gRPC's default is 4 MB)."""


def _credentials(settings: DispatchSettings) -> Credentials:
    return Credentials(
        backend_tokens=split_secrets(settings.dispatch_backend_tokens),
        ingestor_token=settings.dispatch_ingestor_token.get_secret_value(),
    )


def _server_credentials(settings: DispatchSettings) -> grpc.ServerCredentials | None:
    if not (settings.dispatch_tls_cert_file and settings.dispatch_tls_key_file):
        return None
    key = Path(settings.dispatch_tls_key_file).read_bytes()
    chain = Path(settings.dispatch_tls_cert_file).read_bytes()
    client_ca = settings.dispatch_tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=Path(client_ca).read_bytes() if client_ca else None,
        require_client_auth=bool(client_ca),
    )


class HealthWithList(HealthServicer):  # type: ignore[misc]
    """The standard health service, answering `List` too (grpcio-health-checking's async
    servicer leaves it UNIMPLEMENTED, though reflection advertises it): every service's status.

    Our services are known from the start (NOT_SERVING until the database answers), so asking
    for one never answers NOT_FOUND."""

    def __init__(self, services: tuple[str, ...] = SERVICE_NAMES) -> None:
        super().__init__()
        for name in services:
            self._server_status[name] = health_pb2.HealthCheckResponse.NOT_SERVING

    async def List(
        self, request: health_pb2.HealthListRequest, context: aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        """The status of every registered service ("" is the server as a whole)."""
        reply = health_pb2.HealthListResponse()
        for name, status in self._server_status.items():
            reply.statuses[name].status = status
        return reply


def build_server(settings: DispatchSettings, deps: Deps) -> tuple[aio.Server, HealthServicer, int]:
    """The gRPC server with its guard, services, health and reflection, bound but not started."""
    server = aio.server(
        interceptors=[GuardInterceptor(_credentials(settings))],
        # As large as the ingestor may send (webhook_service.app.CHANNEL_OPTIONS), which keeps its
        # requests far below it (webhook_service.forwarder.MAX_REQUEST_BODY_BYTES).
        options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
    )
    dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(DispatchServiceServicer(deps), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServiceServicer(deps), server)
    health_servicer = HealthWithList()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    credentials = _server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(settings.dispatch_listen)
    else:
        port = server.add_secure_port(settings.dispatch_listen, credentials)
    return server, health_servicer, port


async def _set_health(
    health_servicer: HealthServicer, serving: bool, names: tuple[str, ...]
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *names):
        await health_servicer.set(name, status)


async def track_database_health(
    engine: AsyncEngine, health_servicer: HealthServicer, names: tuple[str, ...] = SERVICE_NAMES
) -> None:
    """SERVING (overall and for `names`) only while the database answers; probed every
    DB_PROBE_SECONDS."""
    await _set_health(health_servicer, False, names)
    serving: bool | None = False
    while True:
        try:
            async with autocommit_connection(engine) as connection:
                await connection.execute(text("SELECT 1"))
            answers = True
        except Exception:  # any failure means "not serving"; the reason is logged once per change
            answers = False
        if answers != serving:
            log.info("database %s", "answers" if answers else "does not answer")
            await _set_health(health_servicer, answers, names)
            serving = answers
        await asyncio.sleep(DB_PROBE_SECONDS)


async def serve(settings: DispatchSettings, deps: Deps | None = None) -> None:
    """Run the server until SIGTERM/SIGINT, then drain: NOT_SERVING, stop(grace), close deps."""
    deps = deps or build_deps(settings)
    server, health_servicer, port = build_server(settings, deps)
    await server.start()
    log.info("dispatch service listening on %s (port %d)", settings.dispatch_listen, port)
    if settings.dispatch_metrics_listen:
        start_metrics_server(settings.dispatch_metrics_listen)
    deps.background.append(asyncio.create_task(track_database_health(deps.engine, health_servicer)))
    deps.background.append(
        asyncio.create_task(
            maintain_change_log(
                deps.sessions,
                interval_seconds=settings.changes_sequence_seconds,
                retention_seconds=settings.changes_retention_seconds,
            ),
            name="change-log",
        )
    )
    if settings.callbacks_enabled:
        config = CallbackConfig(
            poll_seconds=settings.callback_poll_seconds,
            timeout_seconds=settings.callback_timeout_seconds,
            max_backoff_seconds=settings.callback_max_backoff_seconds,
            dead_letter_seconds=settings.callback_dead_letter_seconds,
        )
        deps.background.append(
            asyncio.create_task(run_deliverer(deps.sessions, config), name="callbacks")
        )
    deps.start_workers()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info(
        "shutting down: health NOT_SERVING, draining for %.1fs", settings.dispatch_grace_seconds
    )
    deps.stop_workers()  # no new claims; in-flight sends finish and are recorded in close()
    for task in deps.background:
        task.cancel()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.dispatch_grace_seconds)
    await deps.close()
    log.info("stopped")
