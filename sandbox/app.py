"""Composition root: :func:`create_app` builds the aiohttp application from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
from aiohttp import web

from sandbox.config import SandboxSettings
from sandbox.control import ControlRoutes
from sandbox.graph import GraphRoutes
from sandbox.scenario import Scenario, load_scenario
from sandbox.service import SandboxService
from sandbox.twilio import TwilioSide

SANDBOX = web.AppKey("sandbox", SandboxService)
"""The app's :class:`SandboxService`, for embedding and tests."""
TWILIO = web.AppKey("twilio", TwilioSide)
"""The app's Twilio side, when SANDBOX_TWILIO_AUTH_TOKEN is set."""


def create_app(
    settings: SandboxSettings,
    *,
    scenario: Scenario | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> web.Application:
    """Build the sandbox app.

    ``scenario`` overrides ``settings.scenario`` (the file is read here, once; raises
    :class:`~sandbox.scenario.ScenarioError` if it is bad). ``http_client`` replaces the webhook
    client the app would create (and then the caller closes it).
    """
    if scenario is None:
        scenario = load_scenario(settings.scenario) if settings.scenario else Scenario()
    service = SandboxService(settings, scenario)
    app = web.Application()
    app[SANDBOX] = service
    app.router.add_routes(GraphRoutes(service).routes())
    app.router.add_get("/healthz", _healthz)
    if settings.control_enabled:
        app.router.add_routes(ControlRoutes(service).routes())
    app.cleanup_ctx.append(_webhook_delivery(settings, http_client))
    if settings.twilio_auth_token is not None:
        twilio = TwilioSide(
            service,
            settings.twilio_auth_token.get_secret_value(),
            settings.webhook_timeout_seconds,
            settings.webhook_concurrency,
        )
        app[TWILIO] = twilio
        app.router.add_routes(twilio.routes())

        async def twilio_callbacks(app: web.Application) -> AsyncIterator[None]:
            await twilio.start()
            yield
            await twilio.stop()

        app.cleanup_ctx.append(twilio_callbacks)
    return app


def _webhook_delivery(
    settings: SandboxSettings, injected: httpx.AsyncClient | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        client = injected or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.webhook_timeout_seconds),
            limits=httpx.Limits(
                max_connections=settings.webhook_concurrency,
                max_keepalive_connections=settings.webhook_concurrency,
            ),
        )
        sender = app[SANDBOX].webhooks
        await sender.start(client)
        try:
            yield
        finally:
            await sender.stop()
            if injected is None:
                await client.aclose()

    return lifecycle


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
