"""One provider HTTP call inside its send window: the only place httpx errors become outcomes.

Both adapters (Meta, Twilio) post through :func:`post_in_window`:

* the send window passed before the call started, or while the request waited for a pooled
  connection (the transport checks it with the connection in hand): NotSent, never written;
* connecting failed or timed out, or no pooled connection came: transient (nothing left);
* any other transport error once the request may have been written: ambiguous;
* an answer: the adapter's own parser classifies it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from dispatch_service.domain.retry import RetryClass
from dispatch_service.providers.aiohttp_transport import NOT_AFTER, SendWindowPassed
from dispatch_service.providers.base import Failed, NotSent, SendOutcome
from dispatch_service.providers.metrics import PROVIDER_LATENCY

NOT_STARTED = "the send window passed before the call started"


async def post_in_window(
    client: httpx.AsyncClient,
    url: str | httpx.URL,
    parse: Callable[[int, bytes], SendOutcome],
    *,
    not_after: float | None,
    **request: Any,
) -> SendOutcome:
    """POST `request` to `url` if it can leave before `not_after` (monotonic clock)."""
    if not_after is not None and time.monotonic() > not_after:
        return NotSent(NOT_STARTED)
    started = time.perf_counter()
    try:
        response = await client.post(
            url, extensions={NOT_AFTER: not_after} if not_after is not None else None, **request
        )
    except SendWindowPassed as passed:
        return NotSent(str(passed))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        return transport_failure(RetryClass.TRANSIENT, error, "not sent")
    except httpx.TransportError as error:
        return transport_failure(RetryClass.AMBIGUOUS, error, "may have been sent")
    finally:
        PROVIDER_LATENCY.observe(time.perf_counter() - started)
    return parse(response.status_code, response.content)


def transport_failure(retry_class: RetryClass, error: httpx.TransportError, what: str) -> Failed:
    """The outcome of a call that ended without an answer."""
    kind = type(error).__name__
    return Failed(
        retry_class=retry_class,
        error_code=None,
        error_title=f"{kind}: {what}",
        error_details=f"the provider call ended with {kind} before an answer arrived",
    )
