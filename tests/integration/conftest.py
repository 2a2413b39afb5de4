"""Integration fixtures: the real gRPC server (guard, servicers, use cases) in-process on port 0.

* `dispatch_settings`: DispatchSettings for this test's database with fake credentials.
* `grpc_api`: a started `grpc.aio` server built by `build_server` on a free port, and an
  `ApiClient` with real channels: `api.admin` / `api.dispatch` stubs and `api.md(actor)` for the
  call metadata (backend token, plus `x-actor-id` when an actor is given).

    async def test_something(grpc_api: ApiClient) -> None:
        created = await grpc_api.admin.CreateWorkspace(request, metadata=grpc_api.md())
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.generated.invites.v1 import admin_pb2_grpc, dispatch_pb2_grpc
from dispatch_service.bootstrap import Deps
from dispatch_service.server import build_server
from dispatch_service.settings import DispatchSettings

BACKEND_TOKEN = "test-backend-token"
INGESTOR_TOKEN = "test-ingestor-token"
PHONE_NUMBER_ID = "100000000000001"


@pytest.fixture
def dispatch_settings(database_url: str) -> DispatchSettings:
    """Settings for an in-process server on this test's database (no dispatcher, no metrics)."""
    return DispatchSettings(
        database_url=database_url,
        dispatch_listen="127.0.0.1:0",
        dispatch_metrics_listen="",
        dispatch_backend_tokens=BACKEND_TOKEN,
        dispatch_ingestor_token=INGESTOR_TOKEN,
        whatsapp_access_token="test-access-token",
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        dispatcher_enabled=False,
    )


@dataclass
class ApiClient:
    """Real channels to an in-process server, with the test credentials."""

    channel: aio.Channel
    target: str
    settings: DispatchSettings
    sessions: async_sessionmaker[AsyncSession]

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        """The AdminService stub."""
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    @property
    def dispatch(self) -> dispatch_pb2_grpc.DispatchServiceAsyncStub:
        """The DispatchService stub."""
        return dispatch_pb2_grpc.DispatchServiceStub(self.channel)

    @staticmethod
    def md(actor: str | None = None, token: str = BACKEND_TOKEN) -> tuple[tuple[str, str], ...]:
        """Call metadata: the bearer token, and the acting membership when given."""
        items = [("authorization", f"Bearer {token}")]
        if actor:
            items.append(("x-actor-id", actor))
        return tuple(items)


@pytest.fixture
async def grpc_api(
    dispatch_settings: DispatchSettings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[ApiClient]:
    """The real server in-process on a free port, and a client for it."""
    deps = Deps(settings=dispatch_settings, engine=engine, sessions=sessions)
    server, _health, port = build_server(dispatch_settings, deps)
    await server.start()
    target = f"127.0.0.1:{port}"
    channel = aio.insecure_channel(target)
    try:
        yield ApiClient(channel, target, dispatch_settings, sessions)
    finally:
        await channel.close(None)
        await server.stop(None)


def code_of(error: BaseException) -> grpc.StatusCode:
    """The status code of a failed call."""
    assert isinstance(error, aio.AioRpcError), error
    return error.code()
