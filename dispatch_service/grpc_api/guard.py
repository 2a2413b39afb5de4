"""The server interceptor every invites.v1 call goes through: credential check, then error mapping.

Health and reflection are not guarded, so operators can probe the server with grpcurl. The guard
fails closed: an invites.v1 method of a kind it does not wrap (bidirectional streaming, or a
future kind) is refused with INTERNAL, never served without its credential check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from common.outages import OutageLog, is_conflict_error, is_outage_error
from dispatch_service.errors import DispatchError, PermissionDenied, Unauthenticated
from dispatch_service.grpc_api.errors import (
    aborted_status,
    internal_status,
    to_status,
    unavailable_status,
)

log = logging.getLogger(__name__)
OUTAGES = OutageLog(log, "serving calls (database unreachable)")
"""One log line per back-off step while calls fail because the database is away."""

GUARDED_PREFIX = "/invites.v1."
INGESTOR_METHODS = frozenset({"/invites.v1.DispatchService/ApplyStatus"})
DRAIN_SECONDS = 10.0


class Credentials:
    """The bearer tokens the server accepts, by kind."""

    def __init__(self, backend_tokens: list[str], ingestor_token: str) -> None:
        self._backend = [t.encode() for t in backend_tokens]
        self._ingestor = ingestor_token.encode()

    def check(self, method: str, metadata: tuple[tuple[str, Any], ...]) -> None:
        """Raise unless the call carries the credential its method needs."""
        header = next((str(v) for k, v in metadata if k == "authorization"), "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing bearer token in the authorization metadata")
        presented = token.encode()
        is_ingestor = hmac.compare_digest(presented, self._ingestor)
        is_backend = any(hmac.compare_digest(presented, t) for t in self._backend)
        if not (is_ingestor or is_backend):
            raise Unauthenticated("invalid bearer token")
        if (method in INGESTOR_METHODS) != is_ingestor:
            raise PermissionDenied("this credential may not call this method")


async def _abort(context: Any, error: BaseException, method: str) -> None:
    if isinstance(error, DispatchError):
        await context.abort_with_status(to_status(error))  # raises AbortError
        return
    if is_conflict_error(error):
        log.warning("%s rolled back by a conflict with concurrent work: ABORTED", method)
        await context.abort_with_status(aborted_status())
        return
    if is_outage_error(error):
        OUTAGES.failed(error)
        await context.abort_with_status(unavailable_status())
        return
    log.exception("unhandled error in %s", method, exc_info=error)
    await context.abort_with_status(internal_status())


async def _drain(requests: AsyncIterator[Any]) -> None:
    """Read what the client still streams (bounded by DRAIN_SECONDS), so a refusal reaches it.

    A grpc aio client whose write fails after the server ended the call reports "INTERNAL:
    Internal error from Core" instead of the server's status (grpc/grpc#36066): refusing a large
    upload on its header while the client is still sending would lose the reason. Reading to the
    client's half-close first delivers the status after its last write.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in requests:
                pass


class GuardInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks credentials and turns exceptions into statuses for every invites.v1 method."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(GUARDED_PREFIX):
            return handler
        metadata = tuple(handler_call_details.invocation_metadata or ())
        return self._wrap(handler, method, metadata)

    def _wrap(self, handler: Any, method: str, metadata: tuple[tuple[str, Any], ...]) -> Any:
        # grpc's stubs type method handlers as sync; under grpc.aio the behaviours are coroutines.
        check = self._credentials.check
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                try:
                    check(method, metadata)
                    reply = await inner(request, context)
                    if OUTAGES.failures:
                        OUTAGES.succeeded()
                    return reply
                except aio.AbortError:
                    raise
                except Exception as error:
                    await _abort(context, error, method)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    check(method, metadata)
                    async for item in inner_stream(request, context):
                        yield item
                except aio.AbortError:
                    raise
                except Exception as error:
                    await _abort(context, error, method)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_unary:
            inner_client_stream = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: Any) -> Any:
                checked = False
                try:
                    check(method, metadata)
                    checked = True
                    return await inner_client_stream(requests, context)
                except aio.AbortError:
                    raise
                except Exception as error:
                    if checked and isinstance(error, DispatchError):
                        await _drain(requests)  # only for callers holding a valid credential
                    await _abort(context, error, method)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        return _refused(handler, method, kwargs)


def _refused(handler: Any, method: str, kwargs: dict[str, Any]) -> Any:
    """A handler of the same kind that refuses every call: the guard cannot wrap this kind."""
    log.error("refusing %s: the credential guard does not handle its handler kind", method)

    async def refuse_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        await context.abort_with_status(internal_status())
        yield  # pragma: no cover - abort raises; this only makes the function a generator

    async def refuse(request: Any, context: Any) -> Any:
        await context.abort_with_status(internal_status())

    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
