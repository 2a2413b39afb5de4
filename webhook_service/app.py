"""Composition root of the webhook ingestor: `create_app(settings, deps)` wires every route."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from aiohttp import web
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db.engine import make_engine
from common.settings import split_secrets
from webhook_service.forwarder import Forwarder
from webhook_service.inbox import ReceiptWriter
from webhook_service.metrics import POST_SECONDS, POSTS
from webhook_service.processes import METRICS_DIR_VARIABLE
from webhook_service.settings import WebhookSettings
from webhook_service.signature import Verdict, matches, parse_signature
from webhook_service.twilio import (
    FORM_CONTENT_TYPE,
    SIGNATURE_HEADER,
    TWILIO_WEBHOOK_PATH,
    parse_form,
    receipt_body,
    request_url,
)
from webhook_service.twilio import matches as twilio_matches

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
APP_SECRETS = web.AppKey("app_secrets", list[bytes])
TWILIO_TOKENS = web.AppKey("twilio_tokens", list[str])
FORWARDER = web.AppKey("forwarder", Forwarder)
WRITER = web.AppKey("writer", ReceiptWriter)


CHANNEL_OPTIONS = (
    # Reconnect within seconds once the dispatch service is back (gRPC's default backoff grows
    # to two minutes, which would hold pending receipts long after an outage ended).
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)
"""Options of the ingestor's channel to the dispatch service."""


def dispatch_channel(settings: WebhookSettings) -> aio.Channel:
    """The one long-lived channel to the dispatch service."""
    if settings.dispatch_tls_ca_file:
        with open(settings.dispatch_tls_ca_file, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(ca.read())
        return aio.secure_channel(settings.dispatch_target, credentials, options=CHANNEL_OPTIONS)
    return aio.insecure_channel(settings.dispatch_target, options=CHANNEL_OPTIONS)


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


def _refuse(status: int, verdict: str, reason: str) -> web.Response:
    POSTS.labels(verdict).inc()
    return web.Response(status=status, text=reason)


async def read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it grows past `limit` bytes (never read whole)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_webhook(request: web.Request) -> web.Response:
    """POST /webhooks/whatsapp: verify, store the raw body, answer 200; forwarding is async."""
    started = time.perf_counter()
    try:
        return await _receive(request)
    finally:
        POST_SECONDS.observe(time.perf_counter() - started)


async def _receive(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS].webhook_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _refuse(413, "too_large", "body too large")
    presented = parse_signature(request.headers.get("X-Hub-Signature-256"))
    if isinstance(presented, Verdict):  # missing or malformed
        return _refuse(401, presented.value, "missing or malformed X-Hub-Signature-256")
    body = await read_bounded(request, limit)
    if body is None:
        return _refuse(413, "too_large", "body too large")
    if not body:
        return _refuse(400, "empty_body", "empty body")
    secrets: list[bytes] = request.app[APP_SECRETS]
    if not matches(body, presented, secrets):
        return _refuse(403, Verdict.MISMATCH.value, "signature does not match")
    if not await _keep(request, body, "meta"):
        return _refuse(503, "storage_error", "try again later")
    return web.Response(text="ok")


async def _keep(request: web.Request, body: bytes, provider: str) -> bool:
    """Store the verified body and hand a new receipt to the forwarder; False when the store
    failed (the writer logged why): the POST answers 503 and the provider delivers it again.

    A failed store may have committed all the same (the database went away after the commit,
    before the writer heard of it). Its receipt is then pending, and the redelivery is a
    duplicate that hands nothing to the forwarder: the forwarder catches up, or that receipt
    would wait WEBHOOK_SWEEP_MIN_AGE_SECONDS for the sweeper (test_postgres_restart saw 44
    receipts waiting past its deadline)."""
    try:
        receipt = await request.app[WRITER].store(
            body, hashlib.sha256(body).digest(), request.headers, provider=provider
        )
    except Exception:
        request.app[FORWARDER].catch_up()
        return False
    if receipt is None:
        POSTS.labels("duplicate").inc()
    else:
        POSTS.labels("stored").inc()
        request.app[FORWARDER].submit(receipt)
    return True


async def receive_twilio(request: web.Request) -> web.Response:
    """POST /webhooks/twilio: verify X-Twilio-Signature over the configured public URL and the
    form (webhook_service.twilio), store the receipt, answer 200; forwarding is async."""
    started = time.perf_counter()
    try:
        return await _receive_twilio(request)
    finally:
        POST_SECONDS.observe(time.perf_counter() - started)


async def _receive_twilio(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    limit = settings.webhook_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _refuse(413, "too_large", "body too large")
    presented = request.headers.get(SIGNATURE_HEADER, "").strip()
    if not presented:
        return _refuse(401, Verdict.MISSING.value, f"missing {SIGNATURE_HEADER}")
    if request.content_type != FORM_CONTENT_TYPE:
        return _refuse(415, "not_a_form", "expected an application/x-www-form-urlencoded body")
    form = await read_bounded(request, limit)
    if form is None:
        return _refuse(413, "too_large", "body too large")
    params = parse_form(form)
    if params is None:
        return _refuse(400, "invalid_form", "body is not a UTF-8 form")
    url = request_url(settings.twilio_webhook_url, request.rel_url.raw_query_string)
    tokens: list[str] = request.app[TWILIO_TOKENS]
    if not twilio_matches(url, params, presented, tokens):
        return _refuse(403, Verdict.MISMATCH.value, "signature does not match")
    body = receipt_body(url, form)
    if not await _keep(request, body, "twilio"):
        return _refuse(503, "storage_error", "try again later")
    return web.Response(text="<Response/>", content_type="text/xml")


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
    """Prometheus metrics of this process, or of every ingestor process of a supervisor
    (WEBHOOK_PROCESSES > 1: prometheus_client's multiprocess mode, webhook_service/processes)."""
    if METRICS_DIR_VARIABLE not in os.environ:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def create_app(settings: WebhookSettings, deps: Deps | None = None) -> web.Application:
    """The ingestor application; `deps` default to the production ones, built on start-up."""
    app = web.Application(client_max_size=settings.webhook_max_body_bytes)
    app[SETTINGS] = settings
    app[APP_SECRETS] = [s.encode() for s in split_secrets(settings.whatsapp_app_secret)]
    twilio_tokens = settings.twilio_auth_token
    app[TWILIO_TOKENS] = split_secrets(twilio_tokens) if twilio_tokens is not None else []

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[DEPS] = deps or build_deps(settings)
        yield
        await app[DEPS].close()

    async def storing(app: web.Application) -> AsyncIterator[None]:
        writer = ReceiptWriter(app[DEPS].engine)
        app[WRITER] = writer
        writer.start()
        yield
        await writer.stop()

    async def forwarding(app: web.Application) -> AsyncIterator[None]:
        forwarder = Forwarder(settings, app[DEPS].engine, app[DEPS].channel)
        app[FORWARDER] = forwarder
        forwarder.start()
        yield
        await forwarder.stop(settings.webhook_grace_seconds)

    # Cleanup runs in reverse: the forwarder, then the writer, stop before the engine closes.
    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(storing)
    app.cleanup_ctx.append(forwarding)
    app.router.add_get(WEBHOOK_PATH, verify_subscription)
    app.router.add_post(WEBHOOK_PATH, receive_webhook)
    if app[TWILIO_TOKENS]:
        app.router.add_post(TWILIO_WEBHOOK_PATH, receive_twilio)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
