"""Composition root of the webhook ingestor: `create_app(settings, deps)` wires every route."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from aiohttp import web
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db.engine import make_engine
from webhook_service.settings import WebhookSettings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp"
READINESS_TIMEOUT_SECONDS = 1.0


@dataclass
class Deps:
    """What the ingestor talks to: its database engine and its channel to the dispatch service."""

    engine: AsyncEngine
    channel: aio.Channel

    async def close(self) -> None:
        """Close the channel and dispose of the engine."""
        await self.channel.close(None)
        await self.engine.dispose()


SETTINGS = web.AppKey("settings", WebhookSettings)
DEPS = web.AppKey("deps", Deps)


def dispatch_channel(settings: WebhookSettings) -> aio.Channel:
    """The one long-lived channel to the dispatch service."""
    if settings.dispatch_tls_ca_file:
        with open(settings.dispatch_tls_ca_file, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(ca.read())
        return aio.secure_channel(settings.dispatch_target, credentials)
    return aio.insecure_channel(settings.dispatch_target)


def build_deps(settings: WebhookSettings) -> Deps:
    """The production dependencies."""
    return Deps(engine=make_engine(settings.database_url), channel=dispatch_channel(settings))


async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's GET handshake: echo hub.challenge verbatim when mode and token match, else 403."""
    settings = request.app[SETTINGS]
    query = request.rel_url.query
    expected = settings.whatsapp_verify_token.get_secret_value().encode()
    token = query.get("hub.verify_token", "").encode()
    challenge = query.get("hub.challenge")
    if query.get("hub.mode") == "subscribe" and challenge and hmac.compare_digest(token, expected):
        return web.Response(text=challenge, content_type="text/plain")
    return web.Response(status=403, text="verification failed")


async def receive_webhook(request: web.Request) -> web.Response:
    """POST /webhooks/whatsapp: lands with the status-ingestion issue; until then 501."""
    return web.Response(status=501, text="webhook ingestion is not implemented yet")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the dispatch service's health check answers SERVING."""
    stub = health_pb2_grpc.HealthStub(request.app[DEPS].channel)
    try:
        reply = await stub.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READINESS_TIMEOUT_SECONDS
        )
        ready = reply.status == health_pb2.HealthCheckResponse.SERVING
    except aio.AioRpcError:
        ready = False
    return web.json_response(
        {"status": "ready" if ready else "not ready", "dispatch": ready},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: WebhookSettings, deps: Deps | None = None) -> web.Application:
    """The ingestor application; `deps` default to the production ones, built on start-up."""
    app = web.Application(client_max_size=settings.webhook_max_body_bytes)
    app[SETTINGS] = settings

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[DEPS] = deps or build_deps(settings)
        yield
        await app[DEPS].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get(WEBHOOK_PATH, verify_subscription)
    app.router.add_post(WEBHOOK_PATH, receive_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
