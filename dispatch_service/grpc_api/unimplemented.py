"""A shared answer for RPCs whose issue has not landed yet: UNIMPLEMENTED, never a fake success."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from grpc import aio


async def unimplemented(context: aio.ServicerContext[Any, Any], method: str) -> NoReturn:
    """Abort the call with UNIMPLEMENTED."""
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises
