"""The dispatch service's dependencies, built once per process by a composition root (the API
server's ``server.py``, the send worker's ``dispatcher/process.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db.engine import make_engine, make_sessions
from common.settings import split_secrets
from dispatch_service.dispatcher.worker import Dispatcher, DispatcherConfig
from dispatch_service.providers.base import Provider
from dispatch_service.providers.http_call import ProviderClient
from dispatch_service.providers.meta import MetaCloudProvider, build_http_client
from dispatch_service.providers.meta_templates import MetaTemplateCatalog, TemplateCatalog
from dispatch_service.providers.routing import RoutingProvider
from dispatch_service.providers.twilio import TwilioProvider
from dispatch_service.settings import DispatchSettings, SendSettings
from dispatch_service.use_cases.runs import MessageCreation

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """What the servicers and workers talk to; tests build their own."""

    settings: DispatchSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    background: list[asyncio.Task[None]] = field(default_factory=list)
    provider: Provider | None = None
    """The messaging provider runs send through (None: this process sends nothing)."""
    http_client: httpx.AsyncClient | None = None
    """The process's one HTTP client for provider calls, closed with the deps."""
    dispatcher: Dispatcher | None = None
    """The send worker, started by `start_workers` (None when DISPATCHER_ENABLED=false)."""
    dispatcher_task: asyncio.Task[None] | None = None
    template_catalog: TemplateCatalog | None = None
    """Where SyncTemplates reads the WhatsApp Business Account's templates (None: nowhere)."""
    creation: MessageCreation = field(init=False)
    """Creates the remaining messages of the runs this process starts, in the background."""

    def __post_init__(self) -> None:
        self.creation = MessageCreation(self.sessions)

    def start_workers(self) -> None:
        """Start the dispatcher (if any) as a background task."""
        if self.dispatcher is not None and self.dispatcher_task is None:
            self.dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="dispatcher")

    def stop_workers(self) -> None:
        """Ask the dispatcher to stop claiming; in-flight sends finish (awaited by `close`)."""
        if self.dispatcher is not None:
            self.dispatcher.stop()

    async def close(self) -> None:
        """Stop background work, let in-flight sends finish, close the HTTP client and engine."""
        self.stop_workers()
        if self.dispatcher_task is not None:
            await finish_dispatcher(self.dispatcher_task, self.settings)
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.creation.drain(self.settings.dispatch_grace_seconds)
        if self.http_client is not None:
            await self.http_client.aclose()
        await self.engine.dispose()


async def finish_dispatcher(task: asyncio.Task[None], settings: SendSettings) -> None:
    """Wait for a stopping dispatcher's in-flight sends (a provider timeout and a margin), then
    cancel it."""
    grace = settings.dispatch_provider_timeout_seconds + 5.0
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except TimeoutError:
        log.warning("dispatcher did not stop within %.0fs; cancelling it", grace)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_provider(
    settings: SendSettings, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[MetaCloudProvider, ProviderClient]:
    """The Meta Cloud API provider over one AsyncClient with explicit timeouts and limits."""
    client = build_http_client(
        timeout_seconds=settings.dispatch_provider_timeout_seconds,
        connect_timeout_seconds=settings.dispatch_provider_connect_timeout_seconds,
        max_connections=settings.dispatch_http_connections,
        transport=transport,
    )
    provider = MetaCloudProvider(
        client,
        base_url=settings.whatsapp_api_base_url,
        api_version=settings.whatsapp_api_version,
        access_token=settings.whatsapp_access_token.get_secret_value(),
        parameter_format=settings.whatsapp_parameter_format,
    )
    return provider, client


SERVING_POOL_SIZE = 10
"""Database connections an API server that does not send keeps (plus as many in overflow)."""


def pool_size(settings: SendSettings) -> int:
    """Database connections a sending process keeps (claims and result writes run in parallel):
    10 plus one per 20 of DISPATCHER_CONCURRENCY, up to 40 (and 10 more in overflow)."""
    return max(10, min(40, settings.dispatcher_concurrency // 20 + 10))


def build_twilio_provider(settings: SendSettings, client: ProviderClient) -> TwilioProvider | None:
    """The Twilio provider over the same client, or None when TWILIO_AUTH_TOKEN is unset."""
    if settings.twilio_auth_token is None:
        return None
    return TwilioProvider(
        client,
        base_url=settings.twilio_api_base_url,
        auth_token=split_secrets(settings.twilio_auth_token)[0],
        status_callback_url=settings.twilio_status_callback_url,
    )


def build_sending_provider(
    settings: SendSettings, sessions: async_sessionmaker[AsyncSession]
) -> tuple[RoutingProvider, ProviderClient]:
    """The provider a sending process uses: each sender's own (Meta or Twilio) over one client."""
    meta, client = build_provider(settings)
    return RoutingProvider(sessions, meta, build_twilio_provider(settings, client)), client


def build_deps(settings: DispatchSettings) -> Deps:
    """The production dependencies: one engine, one HTTP client, the provider, the dispatcher
    (an engine sized for sending only when the server also sends)."""
    pool = pool_size(settings) if settings.dispatcher_enabled else SERVING_POOL_SIZE
    engine = make_engine(settings.database_url, pool_size=pool)
    sessions = make_sessions(engine)
    provider, client = build_sending_provider(settings, sessions)
    dispatcher = (
        Dispatcher(sessions, provider, DispatcherConfig.from_settings(settings))
        if settings.dispatcher_enabled
        else None
    )
    return Deps(
        settings=settings,
        engine=engine,
        sessions=sessions,
        provider=provider,
        http_client=client,
        dispatcher=dispatcher,
        template_catalog=build_template_catalog(settings, client),
    )


def build_template_catalog(
    settings: DispatchSettings, client: httpx.AsyncClient
) -> MetaTemplateCatalog:
    """The Graph API template list, over the process's one HTTP client."""
    return MetaTemplateCatalog(
        client,
        base_url=settings.whatsapp_api_base_url,
        api_version=settings.whatsapp_api_version,
        access_token=settings.whatsapp_access_token.get_secret_value(),
    )
