"""Signed webhook delivery: a timeline of due events, batched POSTs, bounded redelivery.

Events are scheduled with the monotonic time they are due. One scheduler task waits for the
earliest, lingers briefly so neighbours can join, then packs due events into POSTs of at most
``max_statuses_per_post`` and hands each to a delivery task. At most ``concurrency`` POSTs are
in flight; when all slots are busy the scheduler waits, so events keep batching up instead of
piling up tasks. A POST that does not get HTTP 200 is sent again, byte for byte, as Meta does:
exponential backoff (capped at ``retry.max_interval_s`` between attempts) for up to
``retry.max_elapsed_s`` (7 days by default), every wait multiplied by ``retry.time_scale`` so
tests can compress days into minutes; ``retry.max_attempts`` optionally bounds the attempts.

In ``hold`` mode due events are parked instead of sent, until :meth:`WebhookSender.flush`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from sandbox.payloads import WebhookItem, build_payload, encode, sign
from sandbox.scenario import Retry, Webhooks

log = logging.getLogger(__name__)


def redelivery_waits(retry: Retry) -> Iterator[float]:
    """The waits before each redelivery of a refused webhook, as Meta schedules them (each
    `multiplier` times the last, at most `max_interval_s`, time-scaled), until the attempts or the
    window run out."""
    backoff = retry.initial_ms / 1000
    window = retry.max_elapsed_s * retry.time_scale
    elapsed, attempt = 0.0, 1
    while retry.max_attempts is None or attempt < retry.max_attempts:
        wait = min(backoff, retry.max_interval_s) * retry.time_scale
        if elapsed + wait > window:
            return
        yield wait
        elapsed += wait
        backoff = min(backoff * retry.multiplier, retry.max_interval_s)
        attempt += 1


@dataclass(slots=True)
class DeliveryCounters:
    """What happened to webhook events and POSTs since start (or the last reset)."""

    events_scheduled: int = 0
    events_overflowed: int = 0
    events_without_callback_url: int = 0
    events_acknowledged: int = 0
    events_dropped: int = 0
    posts_acknowledged: int = 0
    attempts_failed: int = 0
    redeliveries: int = 0
    posts_dropped: int = 0


class WebhookSender:
    """Owns the webhook timeline and the POSTs; one per sandbox process."""

    def __init__(
        self,
        *,
        callback_url: str | None,
        app_secret: str,
        waba_id: str,
        display_phone_number: str,
        config: Callable[[], Webhooks],
        rng: random.Random,
        concurrency: int,
        max_pending: int,
    ) -> None:
        self._url = callback_url
        self._secret = app_secret
        self._waba_id = waba_id
        self._display = display_phone_number
        self._config = config
        self._rng = rng
        self._concurrency = concurrency
        self._max_pending = max_pending
        self._timeline: list[tuple[float, int, WebhookItem]] = []
        self._order = itertools.count()
        self._held: list[WebhookItem] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._deliveries: set[asyncio.Task[bool]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.counters = DeliveryCounters()

    @property
    def enabled(self) -> bool:
        """Whether a callback URL is configured."""
        return self._url is not None

    async def start(self, client: httpx.AsyncClient) -> None:
        """Start delivering through ``client`` (owned by the caller)."""
        self._client = client
        self._start_scheduler()

    async def stop(self) -> None:
        """Stop the scheduler and abandon in-flight POSTs (a sandbox keeps no outbox)."""
        tasks: list[asyncio.Task[Any]] = [*self._deliveries]
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scheduler = None

    async def reset(self) -> None:
        """Drop everything scheduled, held or being redelivered, and zero the counters."""
        running = self._scheduler is not None
        await self.stop()
        # A delivery task cancelled before it first ran never released its slot: start afresh.
        self._slots = asyncio.Semaphore(self._concurrency)
        self._timeline.clear()
        self._held.clear()
        self.counters = DeliveryCounters()
        if running:
            self._start_scheduler()

    def _start_scheduler(self) -> None:
        self._scheduler = asyncio.create_task(self._run(), name="sandbox-webhook-scheduler")

    def schedule(self, item: WebhookItem, due: float) -> bool:
        """Deliver ``item`` at monotonic time ``due``; False if it was dropped."""
        if self._url is None:
            self.counters.events_without_callback_url += 1
            return False
        if len(self._timeline) + len(self._held) >= self._max_pending:
            self.counters.events_overflowed += 1
            return False
        heapq.heappush(self._timeline, (due, next(self._order), item))
        self.counters.events_scheduled += 1
        if self._timeline[0][2] is item:
            self._wakeup.set()
        return True

    async def flush(
        self,
        *,
        shuffle: bool = False,
        duplicate_share: float = 0.0,
        batch_size: int | None = None,
        include_scheduled: bool = False,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Release held events now, optionally also those not yet due, shuffled and with some
        sent twice, in POSTs of ``batch_size``; with ``wait``, return once every POST was
        acknowledged or given up on."""
        items = self._held
        self._held = []
        if include_scheduled:
            items.extend(item for _, _, item in sorted(self._timeline))
            self._timeline.clear()
        if duplicate_share:
            items = [
                copy
                for item in items
                for copy in ((item, item) if self._rng.random() < duplicate_share else (item,))
            ]
        if shuffle:
            self._rng.shuffle(items)
        size = batch_size or self._config().batching.max_statuses_per_post
        posts = [
            await self._post(items[start : start + size]) for start in range(0, len(items), size)
        ]
        acknowledged: int | None = None
        if wait:
            results = await asyncio.gather(*posts, return_exceptions=True)
            acknowledged = sum(1 for result in results if result is True)
        return {"released": len(items), "posts": len(posts), "acknowledged_posts": acknowledged}

    def snapshot(self) -> dict[str, Any]:
        """Counters plus what is waiting right now."""
        return {
            **asdict(self.counters),
            "scheduled": len(self._timeline),
            "held": len(self._held),
            "posts_in_flight": len(self._deliveries),
        }

    async def _run(self) -> None:
        while True:
            await self._until_due()
            config = self._config()
            if config.batching.linger_ms:
                await asyncio.sleep(config.batching.linger_ms / 1000)
            due = self._pop_due(time.monotonic())
            if config.hold:
                self._held.extend(due)
                continue
            size = config.batching.max_statuses_per_post
            for start in range(0, len(due), size):
                await self._post(due[start : start + size])

    async def _until_due(self) -> None:
        while True:
            self._wakeup.clear()
            timeout = None
            if self._timeline:
                timeout = self._timeline[0][0] - time.monotonic()
                if timeout <= 0:
                    return
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _pop_due(self, now: float) -> list[WebhookItem]:
        due: list[WebhookItem] = []
        while self._timeline and self._timeline[0][0] <= now:
            due.append(heapq.heappop(self._timeline)[2])
        return due

    async def _post(self, items: Sequence[WebhookItem]) -> asyncio.Task[bool]:
        """Start delivering one POST once a slot is free; the task holds that slot."""
        await self._slots.acquire()
        config = self._config()
        body = encode(
            build_payload(
                items,
                waba_id=self._waba_id,
                display_phone_number=self._display,
                shape=config.shape,
                statuses_per_change=config.batching.statuses_per_change,
                changes_per_entry=config.batching.changes_per_entry,
            )
        )
        task = asyncio.create_task(self._deliver(body, sign(body, self._secret), len(items)))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return task

    async def _deliver(self, body: bytes, signature: str, events: int) -> bool:
        retry = self._config().retry
        started = time.monotonic()
        backoff = retry.initial_ms / 1000
        window = retry.max_elapsed_s * retry.time_scale
        attempt = 1
        while True:
            try:  # the first attempt runs on the slot `_post` acquired
                acknowledged = await self._attempt(body, signature)
            finally:
                self._slots.release()
            if acknowledged:
                self.counters.posts_acknowledged += 1
                self.counters.events_acknowledged += events
                return True
            self.counters.attempts_failed += 1
            elapsed = time.monotonic() - started
            wait = min(backoff, retry.max_interval_s) * retry.time_scale
            out_of_attempts = retry.max_attempts is not None and attempt >= retry.max_attempts
            if out_of_attempts or elapsed + wait > window:
                self.counters.posts_dropped += 1
                self.counters.events_dropped += events
                log.warning("webhook POST dropped after %d attempts (%d events)", attempt, events)
                return False
            self.counters.redeliveries += 1
            await asyncio.sleep(wait)
            backoff = min(backoff * retry.multiplier, retry.max_interval_s)
            attempt += 1
            await self._slots.acquire()

    async def _attempt(self, body: bytes, signature: str) -> bool:
        # Only reachable after start() and with a URL: schedule() drops events otherwise.
        assert self._client is not None
        assert self._url is not None
        try:
            response = await self._client.post(
                self._url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": signature,
                    "User-Agent": "facebookexternalua",
                },
            )
        except httpx.HTTPError as exc:
            log.debug("webhook POST failed: %s", type(exc).__name__)
            return False
        # Meta treats anything but 200 as not delivered (reference §5).
        return response.status_code == 200
