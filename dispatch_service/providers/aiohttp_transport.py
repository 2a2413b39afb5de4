"""An httpx transport over aiohttp's connection pool, for the provider's one AsyncClient.

Why: httpx's default transport (httpcore 1.0) costs milliseconds of CPU per request and grows
with the number of pooled connections; on the 2-core target it topped out at ~250 requests/s
with 20 connections and ~100/s with 200, far below the 1,000 messages/s the dispatcher must
reach with 200 ms provider latency (200 calls in flight). The same httpx.AsyncClient over this
transport measured ~1,800 requests/s against the sandbox. Everything above the transport stays
httpx: one AsyncClient, explicit Timeout and Limits, MockTransport in tests.

aiohttp's exceptions are translated to httpx's, keeping the one distinction the adapter's retry
classification needs: a request that certainly never left (connect errors, connect or pool
timeouts -> ConnectError / ConnectTimeout) versus one that may have reached the provider
(everything after the connection was made -> read/write timeouts, RemoteProtocolError, ReadError).

Send windows: a request may carry `extensions={"not_after": t}` (time.monotonic()). The check
runs in `WindowedRequest.send`, after aiohttp handed over a connection (pooled or new) and before
the first byte is written, so no wait before it (the pool, a slow connect, an event-loop stall)
can push a request out later than its window: it raises `SendWindowPassed` instead, nothing was
written, and the connection goes back to the pool (when recently used). Waiting for a connection
is also cut off at the window.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx

NOT_AFTER = "not_after"
"""The request extension holding the monotonic moment after which it must not be written."""

_not_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "invites_not_after", default=None
)


RawHeaders = tuple[tuple[bytes, bytes], ...]


class SendWindowPassed(Exception):
    """The request's send window passed before it could be written: nothing left."""


RECENT_CONTACT_SECONDS = 1.0
"""A refused request gives its connection back to the pool only when the server heard from it
this recently (see WindowedRequest.send)."""

# When each connection last carried a request (or, never having carried one, was first refused).
_last_contact: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()


class WindowedRequest(aiohttp.ClientRequest):
    """aiohttp's request, refusing to write once the caller's send window has passed."""

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        """Check the window with the connection in hand, then write as aiohttp does."""
        not_after = _not_after.get()
        protocol = conn.protocol
        now = time.monotonic()
        if not_after is not None and now > not_after:
            # Nothing was written, so the connection is as good as it came. aiohttp closes a
            # connection whose send raised, and the next request would pay for a new one (with
            # Meta, a TLS handshake): give it back to the pool instead (its close after this
            # release does nothing). But the pool dates a connection from its release, and the
            # server from the last request it saw: only a connection the server heard from
            # within RECENT_CONTACT_SECONDS goes back, so its idle time as the pool counts it
            # (keepalive_expiry) is never more than that short of the server's. One never used
            # was connected for this request (or refused before, and dated then).
            if now - _last_contact.setdefault(protocol, now) <= RECENT_CONTACT_SECONDS:
                conn.release()
            raise SendWindowPassed("the send window passed before the request was written")
        response = await super().send(conn)
        _last_contact[protocol] = time.monotonic()
        return response


Timeouts = Mapping[str, float | None]
"""httpx's per-request timeouts by name (connect, read, write, pool: `httpx.Timeout.as_dict()`)."""


def _timeout(timeouts: Timeouts, not_after: float | None) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts (connect, read, write, pool) as aiohttp's; waiting for a
    connection ends at the send window too."""
    connect = timeouts.get("connect")
    pool = timeouts.get("pool")
    read = timeouts.get("read")
    write = timeouts.get("write")
    # aiohttp's `connect` covers waiting for a pooled connection plus establishing one.
    waiting = None if connect is None and pool is None else (connect or 0) + (pool or 0)
    if not_after is not None:
        left = max(0.001, not_after - time.monotonic())
        waiting = left if waiting is None else min(waiting, left)
    reply = None if read is None and write is None else max(read or 0, write or 0)
    return aiohttp.ClientTimeout(total=None, connect=waiting, sock_connect=connect, sock_read=reply)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp ClientSession (created on first use, so it
    binds to the running event loop)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 15.0,
                force_close=self._limits.max_keepalive_connections == 0,
            )
            # aiohttp decodes a compressed body; the httpx responses built from it below drop
            # the Content-Encoding header, so httpx does not decode it again.
            self._session = aiohttp.ClientSession(
                connector=connector, request_class=WindowedRequest
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; aiohttp's failures are raised as the matching httpx exceptions."""
        status, raw_headers, content = await self._exchange(
            request.method,
            str(request.url),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            await request.aread(),
            request.extensions.get("timeout", {}),
            request.extensions.get(NOT_AFTER),
            request,
        )
        return httpx.Response(
            status,
            headers=[
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in raw_headers
                if k.lower() != b"content-encoding"
            ],
            content=content,
            request=request,
        )

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        timeouts: Timeouts,
        not_after: float | None,
    ) -> tuple[int, bytes]:
        """POST `content` and return the status and the (decoded) body: the send worker's path,
        with no httpx request or response built around it (`http_call.ProviderClient`). Failures
        are raised as httpx's exceptions, as from handle_async_request."""
        status, _, content = await self._exchange(
            "POST", url, headers, content, timeouts, not_after, None
        )
        return status, content

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | list[tuple[str, str]],
        content: bytes,
        timeouts: Timeouts,
        not_after: float | None,
        request: httpx.Request | None,
    ) -> tuple[int, RawHeaders, bytes]:
        """One request through aiohttp inside the send window: status, raw headers, body."""
        token = _not_after.set(not_after)
        try:
            async with self._client().request(
                method,
                url,
                headers=headers,
                data=content,
                timeout=_timeout(timeouts, not_after),
                allow_redirects=False,
            ) as response:
                return response.status, response.raw_headers, await response.read()
        except aiohttp.ConnectionTimeoutError as error:  # before the request was sent
            if not_after is not None and time.monotonic() >= not_after:
                raise SendWindowPassed("no connection before the send window passed") from error
            raise httpx.ConnectTimeout(str(error), request=request) from error
        except aiohttp.ClientConnectorError as error:  # refused, unreachable, DNS, TLS
            raise httpx.ConnectError(str(error), request=request) from error
        except (TimeoutError, aiohttp.SocketTimeoutError) as error:
            raise httpx.ReadTimeout(str(error), request=request) from error
        except aiohttp.ServerDisconnectedError as error:
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        except aiohttp.ClientError as error:  # reset, payload errors, anything after connecting
            raise httpx.ReadError(str(error), request=request) from error
        finally:
            _not_after.reset(token)

    async def aclose(self) -> None:
        """Close the aiohttp session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
