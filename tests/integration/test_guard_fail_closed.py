"""The credential guard fails closed: a handler kind it cannot wrap is refused, never served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio

from dispatch_service.grpc_api.guard import Credentials, GuardInterceptor

TOKEN = "backend-token"
METHOD = "/invites.v1.ProbeService/Chat"


async def test_a_bidirectional_streaming_method_is_refused_even_with_a_valid_token() -> None:
    served: list[bytes] = []

    async def chat(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            served.append(request)
            yield request

    handler = grpc.method_handlers_generic_handler(
        "invites.v1.ProbeService", {"Chat": grpc.stream_stream_rpc_method_handler(chat)}
    )
    server = aio.server(interceptors=[GuardInterceptor(Credentials([TOKEN], "ingestor-token"))])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.stream_stream(METHOD, None, None)(
                iter([b"hello"]), metadata=(("authorization", f"Bearer {TOKEN}"),)
            )
            with pytest.raises(aio.AioRpcError) as refused:
                _ = [reply async for reply in call]
            assert refused.value.code() is grpc.StatusCode.INTERNAL
    finally:
        await server.stop(None)
    assert served == []
