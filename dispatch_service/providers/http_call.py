"""One provider HTTP call inside its send window: the only place httpx errors become outcomes.

Both adapters (Meta, Twilio) post through :func:`post_in_window`:

* the send window passed before the call started, or while the request waited for a pooled
  connection (the transport checks it with the connection in hand): NotSent, never written;
* connecting failed or timed out, or no pooled connection came: transient (nothing left);
* any other transport error once the request may have been written: ambiguous;
* an answer: the adapter's own parser classifies it.

The request goes from here straight to the client's transport (:class:`ProviderClient`):
provider calls use none of httpx's client layer (auth flows, redirects, cookies, default
headers merged per request), and that layer cost ~200 µs of CPU per request, 40% of a call's
CPU in the send worker (py-spy at ~850 sends/s; a micro-benchmark against a bare aiohttp
server: 481-536 -> 294-338 µs per request). On the aiohttp transport (production) no httpx
request or response is built either: `AiohttpTransport.post` takes the URL, headers and body
and gives back the status and body (client CPU per request against a bare aiohttp server,
100 in flight: 170-173 -> 111-115 µs; the worker with three senders: 348-356 -> 293-294 µs
per message). Everything else stays httpx: any other transport (MockTransport in tests)
gets an `httpx.Request` as before, `httpx.Timeout`, `httpx.Limits`, and the exceptions the
transports raise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from dispatch_service.domain.retry import RetryClass
from dispatch_service.providers.aiohttp_transport import (
    NOT_AFTER,
    AiohttpTransport,
    SendWindowPassed,
)
from dispatch_service.providers.base import Failed, NotSent, SendOutcome
from dispatch_service.providers.metrics import PROVIDER_LATENCY

NOT_STARTED = "the send window passed before the call started"
USER_AGENT = "invite-dispatch"


class ProviderClient(httpx.AsyncClient):
    """The process's one AsyncClient for provider calls, whose `post_direct` hands a request
    straight to its transport (see the module docstring). Closing it closes the transport."""

    def __init__(
        self, *, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout, limits: httpx.Limits
    ) -> None:
        super().__init__(transport=transport, timeout=timeout, limits=limits)
        self._direct = transport
        self._timeouts = timeout.as_dict()

    async def post_direct(
        self, url: httpx.URL, content: bytes, headers: Mapping[str, str], not_after: float | None
    ) -> tuple[int, bytes]:
        """POST `content` with exactly `headers` (plus Host, Content-Length and User-Agent),
        the client's timeouts and the send window; the status and the body, read whole."""
        headers = {"User-Agent": USER_AGENT, **headers}
        if isinstance(self._direct, AiohttpTransport):
            return await self._direct.post(str(url), headers, content, self._timeouts, not_after)
        extensions: dict[str, object] = {"timeout": self._timeouts}
        if not_after is not None:
            extensions[NOT_AFTER] = not_after
        request = httpx.Request(
            "POST", url, headers=headers, content=content, extensions=extensions
        )
        response = await self._direct.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.content


async def post_in_window(
    client: ProviderClient,
    url: httpx.URL,
    parse: Callable[[int, bytes], SendOutcome],
    *,
    not_after: float | None,
    content: bytes,
    headers: Mapping[str, str],
) -> SendOutcome:
    """POST `content` to `url` if it can leave before `not_after` (monotonic clock)."""
    if not_after is not None and time.monotonic() > not_after:
        return NotSent(NOT_STARTED)
    started = time.perf_counter()
    try:
        status, body = await client.post_direct(url, content, headers, not_after)
    except SendWindowPassed as passed:
        return NotSent(str(passed))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        return transport_failure(RetryClass.TRANSIENT, error, "not sent")
    except httpx.TransportError as error:
        return transport_failure(RetryClass.AMBIGUOUS, error, "may have been sent")
    finally:
        PROVIDER_LATENCY.observe(time.perf_counter() - started)
    return parse(status, body)


def transport_failure(retry_class: RetryClass, error: httpx.TransportError, what: str) -> Failed:
    """The outcome of a call that ended without an answer."""
    kind = type(error).__name__
    return Failed(
        retry_class=retry_class,
        error_code=None,
        error_title=f"{kind}: {what}",
        error_details=f"the provider call ended with {kind} before an answer arrived",
    )
