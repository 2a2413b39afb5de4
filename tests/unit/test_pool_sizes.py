"""How many database connections each process keeps (docs/operations.md §2 sizes Postgres by
them): a sending process 10 plus one per 20 of DISPATCHER_CONCURRENCY, up to 40; an API server
that only serves, 10; each with 10 more in overflow."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch_service.bootstrap import build_deps
from dispatch_service.settings import DispatchSettings
from tests.unit.settings_support import DISPATCH_REQUIRED


@pytest.mark.parametrize(
    ("overrides", "pool"),
    [
        ({}, 10),
        ({"dispatcher_concurrency": 4000}, 10),
        ({"dispatcher_enabled": True}, 40),
        ({"dispatcher_enabled": True, "dispatcher_concurrency": 200}, 20),
        ({"dispatcher_enabled": True, "dispatcher_concurrency": 50}, 12),
    ],
)
async def test_an_api_server_sizes_its_pool_for_sending_only_when_it_sends(
    overrides: dict[str, Any], pool: int
) -> None:
    deps = build_deps(DispatchSettings(**DISPATCH_REQUIRED, **overrides))
    try:
        assert deps.engine.pool.size() == pool  # type: ignore[attr-defined]
    finally:
        if deps.http_client is not None:
            await deps.http_client.aclose()
        await deps.engine.dispose()
