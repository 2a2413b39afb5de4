"""Signed callbacks: each workspace's changes POSTed to its receiver, in order, until accepted.

The deliverer is its own loop with its own HTTP client: a slow or dead receiver delays only its
own workspace's callbacks, never sending or ingestion (those never wait on it). Per workspace,
batches of consecutive changes (after the endpoint's cursor) are POSTed one at a time; the
cursor moves only when the receiver answers 2xx, so delivery is at-least-once and in order (per
message, too). A failure is retried after 1, 2, 4 ... seconds (capped); when a receiver has
failed for longer than the dead-letter time, the batch is logged as dead-lettered and delivery
goes on with the next one. Several replicas may run the deliverer: endpoints are leased.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.outages import OutageLog
from dispatch_service.domain.actors import SENDERS
from dispatch_service.domain.callbacks import SIGNATURE_HEADER, callback_body, retry_delay, sign
from dispatch_service.domain.changes import ChangeFilter
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence import callbacks as store
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.changes import read_changes, sequence_pending
from dispatch_service.read_models import EndpointState
from dispatch_service.use_cases.acting import READERS, acting

log = logging.getLogger(__name__)

URL = re.compile(r"^https?://[^\s/\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*$")
"""An http(s) URL with a host, and no space or control character anywhere."""
MIN_SECRET = 16
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CallbackConfig:
    """How the deliverer behaves (from the CALLBACK_* settings)."""

    poll_seconds: float = 0.5
    batch_size: int = 100
    timeout_seconds: float = 5.0
    max_backoff_seconds: float = 300.0
    dead_letter_seconds: float = 24 * 3600
    concurrency: int = 10
    lease_seconds: float = 60.0


# --- configuration (AdminService) -----------------------------------------------------------


async def set_callback_endpoint(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, url: str, secret: str
) -> EndpointState | None:
    """Configure the workspace's receiver (an empty url removes it); its delivery state."""
    url = url.strip()
    if url:
        violations = []
        if not URL.match(url):
            violations.append(FieldViolation("url", "must be an http(s) URL"))
        if len(secret) < MIN_SECRET:
            violations.append(FieldViolation("secret", f"must be at least {MIN_SECRET} chars"))
        elif CONTROL.search(secret):
            violations.append(FieldViolation("secret", "must not hold control characters"))
        if violations:
            raise InvalidArgument(*violations)
    async with acting(sessions, actor_id, SENDERS, "configure callbacks") as (session, actor):
        if url:
            await store.set_endpoint(session, actor.workspace_id, url, secret)
        else:
            await store.remove_endpoint(session, actor.workspace_id)
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="callback.set" if url else "callback.remove",
            subject_type="workspace",
            subject_id=actor.workspace_id,
            details={"url": url},  # never the secret
        )
        await session.flush()
        return await store.endpoint_state(session, actor.workspace_id)


async def get_callback_endpoint(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID
) -> EndpointState | None:
    """The workspace's receiver and its delivery state (None when not configured)."""
    async with acting(sessions, actor_id, READERS, "read callbacks") as (session, actor):
        return await store.endpoint_state(session, actor.workspace_id)


# --- delivery --------------------------------------------------------------------------------


async def _deliver(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    config: CallbackConfig,
    endpoint: store.Endpoint,
) -> None:
    async with sessions() as session:
        where = ChangeFilter(endpoint.workspace_id)
        changes, _ = await read_changes(session, where, endpoint.cursor, config.batch_size)
        if not changes:
            await session.commit()
            await store.release_idle(session, endpoint.workspace_id, config.poll_seconds)
            return
    first, last = changes[0].position, changes[-1].position
    failing_for = (
        (datetime.now(UTC) - endpoint.failing_since).total_seconds()
        if endpoint.failing_since is not None
        else 0.0
    )
    if failing_for > config.dead_letter_seconds:
        log.warning(
            "callback receiver failing for %.0fs: changes dead-lettered",
            failing_for,
            extra={"workspace_id": str(endpoint.workspace_id), "first": first, "last": last},
        )
        async with sessions() as session:
            await store.record_dead_lettered(session, endpoint, first, last, len(changes))
        return
    body = callback_body(str(endpoint.workspace_id), changes)
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(endpoint.secret, body, int(time.time())),
    }
    code: int | None = None
    error = ""
    try:
        response = await client.post(
            endpoint.url, content=body, headers=headers, timeout=config.timeout_seconds
        )
        code = response.status_code
    except httpx.HTTPError as failure:
        error = type(failure).__name__
    async with sessions() as session:
        if code is not None and 200 <= code < 300:
            await store.record_delivered(session, endpoint, first, last, len(changes), code)
        else:
            wait = retry_delay(endpoint.attempts + 1, config.max_backoff_seconds)
            await store.record_failed(
                session, endpoint.workspace_id, first, last, code, error or f"HTTP {code}", wait
            )


async def deliver_once(
    sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, config: CallbackConfig
) -> int:
    """One round: number pending changes, lease due endpoints, POST one batch to each; how
    many endpoints were handled."""
    async with sessions() as session:
        await sequence_pending(session)
        endpoints = await store.claim_due(session, config.concurrency, config.lease_seconds)
    await asyncio.gather(*(_deliver(sessions, client, config, e) for e in endpoints))
    return len(endpoints)


async def run_deliverer(
    sessions: async_sessionmaker[AsyncSession],
    config: CallbackConfig,
    transport: httpx.AsyncBaseTransport | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """The deliverer loop (until cancelled or `stop` is set), with its own HTTP client."""
    stop = stop or asyncio.Event()
    outage = OutageLog(log, "callback delivery")
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
        while not stop.is_set():
            handled = 0
            try:
                handled = await deliver_once(sessions, client, config)
                outage.succeeded()
            except Exception as error:  # a database outage must not end the loop
                outage.failed(error)
            if not handled:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), config.poll_seconds)
