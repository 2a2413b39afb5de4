"""Forwarding receipts to the dispatch service's ApplyStatus, promptly and without losing any.

Two paths share one planning step (normalise, bind senders, build requests of at most M updates):

* **Fresh receipts.** The POST handler hands each stored receipt to :meth:`Forwarder.submit`.
  A loop woken by an ``asyncio.Event`` lingers a few milliseconds so neighbours can join, then
  gathers what is waiting (up to N receipts), sends ApplyStatus (deadline on every call, a few
  retries with exponential backoff and jitter on transient errors) and keeps up to K calls in
  flight, so batches grow with load; while a call is out, another starts only with a full
  batch (smaller ones wait for that call to end, then go together at once).
* **The sweeper.** Every few seconds it claims pending receipts older than a minimum age with
  ``FOR NO KEY UPDATE SKIP LOCKED`` (several ingestors share the work, none forwards a receipt
  another one holds), forwards them, and records the outcome in the same transaction. It is what
  delivers receipts stored while the dispatch service was down, or before a crash.

A receipt is marked ``applied`` only when ApplyStatus applied every update in it: on the fresh path
by ApplyStatus itself, in the transaction that applies them (the request names its receipts; one
commit per batch instead of two), and by the ingestor for what the call did not settle (flagged
receipts, receipts with nothing to forward, ones a sweeper held); the sweeper, which holds its
receipts locked, marks them itself in its own transaction. When a call fails, its receipts stay
``pending`` (attempts and last error recorded) and the ingestor is *degraded* until a call
succeeds: fresh receipts are not queued in memory (they wait in the database, so memory stays
bounded however long the dispatch service is down), and the sweeper takes every pending receipt
whatever its age, once per sweep interval. After the outage (of the dispatch service or of
Postgres), and from start-up (an ingestor killed before forwarding leaves receipts behind), the
ingestor stays in that *catching up* mode until a sweep finds no pending receipt older than a
second: such receipts never wait for the minimum age, so the backlog is applied within one sweep
interval of the dispatch service and the database answering again (fresh receipts keep their fast
path meanwhile).

Failures that an outage repeats (the database or the dispatch service away) are logged once per
back-off step with a growing interval (common.outages.OutageLog), without tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db.receipts import Settled, Settlement, settle
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import dispatch_pb2_grpc as pb_grpc
from common.outages import OutageLog
from common.vocabulary import ReceiptFlag, ReceiptState
from webhook_service import inbox, metrics
from webhook_service.inbox import Receipt
from webhook_service.normalise import Normalised, normalise
from webhook_service.settings import WebhookSettings
from webhook_service.twilio import normalise_twilio

log = logging.getLogger(__name__)

CATCH_UP_MIN_AGE_SECONDS = 1.0
"""While catching up after an outage or a restart, the sweeper leaves receipts younger than
this to the fresh path (which applies them within milliseconds when all is well)."""

CATCH_UP_MARGIN_SECONDS = 0.5
"""Added to CATCH_UP_MIN_AGE_SECONDS before a sweep may end catching up (the receipts' age is
the database's clock, the wait this process's)."""

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


MAX_REQUEST_BODY_BYTES = 2_000_000
"""A request takes receipts whose bodies add up to at most this (one larger receipt goes alone):
a receipt's updates never take more bytes than its JSON, so requests stay under gRPC's 4 MB
default however long the texts of a backlog are (the update limit alone let 80 long inbound
texts make one request over it, refused with RESOURCE_EXHAUSTED at every sweep)."""


FORWARD_QUEUE_BYTES = 64 * 1024 * 1024
"""The fresh queue's bodies, in bytes, past which a receipt is left to the sweeper, as past
WEBHOOK_FORWARD_QUEUE_LIMIT receipts: Meta's bodies reach 3 MB, so a count alone bounded the
queue's memory only at gigabytes."""

REFUSED_CODES = frozenset(
    code.name
    for code in (
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
)
"""A call's codes that may mean the request itself cannot be applied (the sweeper then splits
it); UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED mean an outage, which splitting cannot help."""


def _timestamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


@dataclass
class Plan:
    """One ApplyStatus request built from some receipts, and what to record on each."""

    request: pb.ApplyStatusRequest = field(default_factory=pb.ApplyStatusRequest)
    forwarded: list[Settlement] = field(default_factory=list)
    """Receipts that become applied when the call succeeds (or stay pending when it fails)."""
    settled: list[Settlement] = field(default_factory=list)
    """Receipts settled whatever the call does (flagged, or nothing to forward)."""
    body_bytes: int = 0
    """The forwarded receipts' bodies, in bytes: more than the request carries of them."""

    @property
    def update_count(self) -> int:
        r = self.request
        return (
            len(r.statuses)
            + len(r.preferences)
            + len(r.inbound_texts)
            + len(r.template_updates)
            + len(r.messaging_limit_updates)
        )


def _add_updates(
    request: pb.ApplyStatusRequest,
    receipt: Receipt,
    updates: Normalised,
    known: set[str],
) -> int:
    """Add a receipt's updates for known senders to `request`; returns how many were dropped."""
    receipt_id = str(receipt.id)
    dropped = 0
    for s in updates.statuses:
        if s.phone_number_id not in known:
            dropped += 1
            continue
        request.statuses.append(
            pb.StatusUpdate(
                receipt_id=receipt_id,
                provider=receipt.provider,
                phone_number_id=s.phone_number_id,
                provider_message_id=s.provider_message_id,
                status=s.status,
                provider_timestamp=_timestamp(s.timestamp),
                recipient_id=s.recipient_id,
                callback_data=s.callback_data,
                errors=[
                    pb.ProviderError(code=e.code, title=e.title, details=e.details)
                    for e in s.errors
                ],
                recipient_user_id=s.recipient_user_id,
                recipient_parent_user_id=s.recipient_parent_user_id,
                recipient_type=s.recipient_type,
                participant_id=s.participant_id,
                participant_user_id=s.participant_user_id,
                participant_parent_user_id=s.participant_parent_user_id,
                contacts=[
                    pb.ProviderContact(
                        wa_id=c.wa_id,
                        user_id=c.user_id,
                        parent_user_id=c.parent_user_id,
                        username=c.username,
                    )
                    for c in s.contacts
                ],
                pricing=(
                    pb.Pricing(
                        billable=s.pricing.billable,
                        category=s.pricing.category,
                        pricing_model=s.pricing.pricing_model,
                        type=s.pricing.type,
                    )
                    if s.pricing is not None
                    else None
                ),
            )
        )
    for p in updates.preferences:
        if p.phone_number_id not in known:
            dropped += 1
            continue
        request.preferences.append(
            pb.PreferenceUpdate(
                receipt_id=receipt_id,
                phone_number_id=p.phone_number_id,
                wa_id=p.wa_id,
                category=p.category,
                value=p.value,
                provider_timestamp=_timestamp(p.timestamp),
                user_id=p.user_id,
                parent_user_id=p.parent_user_id,
            )
        )
    for t in updates.inbound_texts:
        if t.phone_number_id not in known:
            dropped += 1
            continue
        request.inbound_texts.append(
            pb.InboundText(
                receipt_id=receipt_id,
                phone_number_id=t.phone_number_id,
                from_wa_id=t.from_wa_id,
                provider_message_id=t.message_id,
                text=t.text,
                provider_timestamp=_timestamp(t.timestamp),
                from_user_id=t.from_user_id,
                from_parent_user_id=t.from_parent_user_id,
                username=t.username,
            )
        )
    for u in updates.template_updates:  # keyed by WABA id: the dispatch service matches it
        request.template_updates.append(
            pb.TemplateUpdate(
                receipt_id=receipt_id,
                waba_id=u.waba_id,
                field=u.field,
                meta_template_id=u.meta_template_id,
                name=u.name,
                language=u.language,
                provider_timestamp=_timestamp(u.timestamp),
                buttons=[pb.TemplateUpdateButton(**b) for b in u.buttons],
                **u.values,
            )
        )
    for limit in updates.limit_updates:  # keyed by WABA id too
        request.messaging_limit_updates.append(
            pb.MessagingLimitUpdate(
                receipt_id=receipt_id,
                waba_id=limit.waba_id,
                field=limit.field,
                provider_timestamp=_timestamp(limit.timestamp),
                max_daily_conversations_per_business=limit.limit,
                event=limit.event,
            )
        )
    return dropped


class SenderCache:
    """Sender phone number ids known to belong to workspaces, remembered for a short while.

    Only known ids are cached, so a workspace created for a new number is seen at once; a
    number moved away from every workspace is still accepted for up to `ttl` seconds, which is
    harmless: ApplyStatus only touches messages whose run used that number.
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self._ttl = ttl
        self._known: dict[str, tuple[uuid.UUID | None, float]] = {}

    async def bindings(
        self, db: AsyncConnection | AsyncEngine, phone_number_ids: Sequence[str]
    ) -> dict[str, uuid.UUID | None]:
        """Known ids -> their workspace when exactly one workspace uses them, else None."""
        now = time.monotonic()
        found = {
            pnid: entry[0]
            for pnid in phone_number_ids
            if (entry := self._known.get(pnid)) is not None and entry[1] > now
        }
        missing = [pnid for pnid in phone_number_ids if pnid not in found]
        if missing:
            if isinstance(db, AsyncEngine):
                async with db.connect() as conn:
                    fresh = await inbox.sender_bindings(conn, missing)
            else:
                fresh = await inbox.sender_bindings(db, missing)
            self._known.update((pnid, (ws, now + self._ttl)) for pnid, ws in fresh.items())
            found.update(fresh)
        return found


def _normalise(receipt: Receipt) -> Normalised:
    if receipt.provider == "twilio":
        return normalise_twilio(receipt.body, receipt.received_at)
    return normalise(receipt.body)


async def plan(
    db: AsyncConnection | AsyncEngine,
    receipts: Sequence[Receipt],
    senders: SenderCache | None = None,
    max_updates: int = 2_000,
) -> list[Plan]:
    """Normalise receipts, bind them to workspaces and build ApplyStatus requests of at most
    `max_updates` updates each (a receipt is never split, so one may carry more)."""
    normalised = [(r, _normalise(r)) for r in receipts]
    ids = sorted({pnid for _, n in normalised for pnid in n.phone_number_ids})
    bindings = await (senders or SenderCache(ttl=0)).bindings(db, ids)
    known = set(bindings)
    plans = [Plan()]
    for receipt, updates in normalised:
        result = plans[-1]
        rid = receipt.id
        notes = _notes(updates)
        if updates.whole_body_flagged:
            assert updates.flag is not None
            log.warning(
                "receipt flagged %s: %s",
                updates.flag.value,
                updates.problem,
                extra={"receipt_id": rid},
            )
            result.settled.append(
                Settlement(rid, ReceiptState.FLAGGED, flag=updates.flag.value, notes=notes)
            )
            continue
        first = updates.phone_number_ids[0] if updates.phone_number_ids else None
        settlement = Settlement(
            rid,
            ReceiptState.APPLIED,
            flag=updates.flag.value if updates.flag is not None else None,
            phone_number_id=first,
            workspace_id=bindings.get(first or ""),
            notes=notes,
            unreadable=len(updates.unreadable),
            ignored=tuple(n.subject for n in updates.ignored),
        )
        if updates.phone_number_ids and not known.intersection(updates.phone_number_ids):
            result.settled.append(_flagged(rid, ReceiptFlag.UNKNOWN_SENDER, first, notes))
            continue
        if updates.unreadable:
            log.warning(
                "%d items not read (the readable rest is applied): %s",
                len(updates.unreadable),
                updates.problem,
                extra={"receipt_id": rid},
            )
        for error in updates.value_errors:
            log.warning(
                "provider reported error %d: %s", error.code, error.title, extra={"receipt_id": rid}
            )
        if result.update_count and (
            result.update_count + updates.update_count > max_updates
            or result.body_bytes + len(receipt.body) > MAX_REQUEST_BODY_BYTES
        ):
            result = Plan()
            plans.append(result)
        result.body_bytes += len(receipt.body)
        sizes = _sizes(result.request)
        try:
            dropped = _add_updates(result.request, receipt, updates, known)
        except (ValueError, TypeError, OverflowError) as error:  # a value protobuf refuses
            _truncate(result.request, sizes)  # the request as it was before this receipt
            problem = type(error).__name__
            result.settled.append(_flagged(rid, ReceiptFlag.UNKNOWN_SHAPE, first, notes, problem))
            continue
        if dropped:
            log.warning(
                "%d updates for unknown sender ids skipped", dropped, extra={"receipt_id": rid}
            )
        if updates.update_count - dropped:
            result.forwarded.append(settlement)
        else:
            result.settled.append(settlement)  # ignored changes, unreadable items: nothing to send
    return plans


def _flagged(
    receipt_id: uuid.UUID,
    flag: ReceiptFlag,
    phone_number_id: str | None,
    notes: str | None,
    problem: str = "",
) -> Settlement:
    """A receipt flagged whatever the call does (logged)."""
    log.warning(
        "receipt flagged %s%s",
        flag.value,
        f": {problem}" if problem else "",
        extra={"receipt_id": receipt_id},
    )
    return Settlement(
        receipt_id,
        ReceiptState.FLAGGED,
        flag=flag.value,
        phone_number_id=phone_number_id,
        notes=notes,
    )


_REPEATED = (
    "statuses",
    "preferences",
    "inbound_texts",
    "template_updates",
    "messaging_limit_updates",
)


def _sizes(request: pb.ApplyStatusRequest) -> tuple[int, ...]:
    return tuple(len(getattr(request, name)) for name in _REPEATED)


def _truncate(request: pb.ApplyStatusRequest, sizes: tuple[int, ...]) -> None:
    """Drop what was added to `request` since `_sizes` returned `sizes`."""
    for name, size in zip(_REPEATED, sizes, strict=True):
        del getattr(request, name)[size:]


MAX_STORED_NOTES = 100
"""Notes kept on one receipt; the rest are counted in a last note (the body has them all)."""


def _notes(updates: Normalised) -> str | None:
    """The receipt's notes as JSON (None when there are none: the stored default stays)."""
    notes = [n.as_json() for n in updates.notes[:MAX_STORED_NOTES]]
    if len(updates.notes) > MAX_STORED_NOTES:
        more = len(updates.notes) - MAX_STORED_NOTES
        notes.append({"path": "", "kind": "more", "reason": f"{more} more notes not stored"})
    if updates.whole_body_flagged and updates.problem and not notes:
        notes.append({"path": "body", "kind": "unreadable", "reason": updates.problem})
    return json.dumps(notes) if notes else None


class Forwarder:
    """Forwards fresh receipts as they arrive and sweeps pending ones; one per ingestor."""

    def __init__(
        self, settings: WebhookSettings, engine: AsyncEngine, channel: aio.Channel
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._stub = pb_grpc.DispatchServiceStub(channel)
        token = settings.dispatch_ingestor_token.get_secret_value()
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._queue: deque[Receipt] = deque()
        self._queued_weight = 0
        """The queue's receipts' weight (_weight): how many updates they hold, roughly."""
        self._queued_bytes = 0
        """The queue's receipts' bodies, in bytes (bounded by FORWARD_QUEUE_BYTES)."""
        self._waited_for_call = False
        """The queue waited for a call to end (it had its linger then): it goes at once."""
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.webhook_forward_concurrency)
        self._calls: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._degraded = False
        """True after a call failed, until one succeeds: the sweeper is then in charge."""
        self._catching_up = False
        """True from start-up (an ingestor that died may have left receipts behind) and from a
        failure (a call, a sweep) or a full queue until a sweep finds nothing left behind."""
        self._catch_up_until = 0.0
        """A sweep ends catching up only from then on: a receipt left behind just before is
        younger than CATCH_UP_MIN_AGE_SECONDS until then, and a sweep would not see it yet."""
        self.catch_up()  # from start-up
        self._senders = SenderCache()
        self._sweep_log = OutageLog(log, "sweeping pending receipts")
        self._call_log = OutageLog(log, "ApplyStatus")
        self._fresh_log = OutageLog(log, "forwarding fresh receipts")

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the forwarding loop and the sweeper."""
        self._tasks = [
            asyncio.create_task(self._forward_loop(), name="forwarder"),
            asyncio.create_task(self._sweep_loop(), name="sweeper"),
        ]

    async def stop(self, grace: float) -> None:
        """Stop taking work, let in-flight calls finish for up to `grace` seconds, then cancel.

        Receipts not applied by then stay pending and are swept later (here or elsewhere)."""
        for task in self._tasks:
            task.cancel()
        if self._calls:
            await asyncio.wait(self._calls, timeout=grace)
        for task in (*self._tasks, *self._calls):
            task.cancel()
        for task in (*self._tasks, *self._calls):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def catch_up(self) -> None:
        """Receipts may have been left behind now: sweep every one a second old until a sweep
        made after they are that old finds none (also the receipt writer's failures: app.py)."""
        self._catching_up = True
        self._catch_up_until = time.monotonic() + CATCH_UP_MIN_AGE_SECONDS + CATCH_UP_MARGIN_SECONDS

    def submit(self, receipt: Receipt) -> None:
        """Hand a freshly stored receipt to the forwarder (never blocks)."""
        if self._degraded:
            return  # it is durable: the sweeper forwards it
        if (
            len(self._queue) >= self._settings.webhook_forward_queue_limit
            or self._queued_bytes + len(receipt.body) > FORWARD_QUEUE_BYTES
        ):
            # Durable too, but the sweeper would leave it for WEBHOOK_SWEEP_MIN_AGE_SECONDS (a
            # minute) as a receipt on some ingestor's fresh path: catching up, it takes every
            # receipt a second old, so a burst past the queue is applied within a sweep.
            self.catch_up()
            metrics.LEFT_TO_SWEEPER.inc()
            return
        self._queue.append(receipt)
        self._queued_weight += _weight(receipt)
        self._queued_bytes += len(receipt.body)
        self._wake.set()

    # --- fresh receipts ----------------------------------------------------------------------

    def _take_batch(self) -> list[Receipt]:
        batch: list[Receipt] = []
        size = 0
        limit = self._settings.webhook_forward_batch_updates
        while self._queue and len(batch) < self._settings.webhook_forward_batch_receipts:
            weight = _weight(self._queue[0])
            if batch and size + weight > limit:
                break
            batch.append(self._queue.popleft())
            size += weight
        self._queued_weight -= size
        self._queued_bytes -= sum(len(r.body) for r in batch)
        return batch

    def _unqueue(self, ids: set[uuid.UUID]) -> None:
        """Drop these receipts from the queue (a sweep claimed them)."""
        if not self._queue or not ids:
            return
        kept = deque(r for r in self._queue if r.id not in ids)
        if len(kept) != len(self._queue):
            self._queue = kept
            self._queued_weight = sum(_weight(r) for r in kept)
            self._queued_bytes = sum(len(r.body) for r in kept)

    def _full_batch_waiting(self) -> bool:
        return (
            len(self._queue) >= self._settings.webhook_forward_batch_receipts
            or self._queued_weight >= self._settings.webhook_forward_batch_updates
        )

    async def _forward_loop(self) -> None:
        linger = self._settings.webhook_forward_linger_seconds
        while True:
            await self._wake.wait()
            self._wake.clear()
            if (
                linger
                and not self._waited_for_call
                and len(self._queue) < self._settings.webhook_forward_batch_receipts
            ):
                await asyncio.sleep(linger)  # let neighbours join: fewer, larger calls
            self._waited_for_call = False
            while self._queue:
                if self._calls and not self._full_batch_waiting():
                    # A call is out: this batch grows until it is full or that call is done
                    # (_call_done wakes this loop), rather than going as one more small call.
                    break
                await self._slots.acquire()
                batch = self._take_batch()
                if not batch:
                    self._slots.release()
                    break
                task = asyncio.create_task(self._forward_fresh(batch))
                self._calls.add(task)
                task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        self._slots.release()
        if self._queue:
            self._waited_for_call = True  # what waited for this call to end goes now
            self._wake.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            self.catch_up()  # its receipts are pending: the sweeper takes them
            self._fresh_log.failed(error)

    async def _forward_fresh(self, receipts: list[Receipt]) -> None:
        if self._degraded:
            return  # left pending for the sweeper
        left: list[Settlement] = []
        for work in await self._plan(self._engine, receipts):
            # ApplyStatus marks these applied in its own transaction: one commit, not two.
            work.request.settle_receipts.extend(_settlement_message(s) for s in work.forwarded)
            response = await self._call(work, attempts=self._settings.webhook_forward_attempts)
            left += self._left_to_settle(work, response, "fresh")
        if left:  # flagged, nothing to forward, failed, or held by a sweeper meanwhile
            # A receipt another transaction holds is a sweeper's, which settles it itself when
            # it commits: waiting for that (a sweep forwards up to a batch of receipts in one
            # transaction) held this call's slot for seconds during a backlog.
            async with self._engine.begin() as conn:
                self._count(await settle(conn, left, skip_locked=True), left, "fresh")

    # --- the sweeper -------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        interval = self._settings.webhook_sweep_interval_seconds
        while True:
            try:
                swept = await self.sweep_once()
                pending, oldest = await inbox.pending_stats(self._engine)
                metrics.UNAPPLIED.set(pending)
                metrics.OLDEST_UNAPPLIED.set(oldest)
                self._sweep_log.succeeded()
            except Exception as error:
                self._sweep_log.failed(error)
                self.catch_up()  # receipts may be waiting that nobody forwarded
                swept = 0
            # A full batch that went through means more may be waiting: go again at once.
            if self._degraded or swept < self._settings.webhook_forward_batch_receipts:
                await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    async def sweep_once(self) -> int:
        """Forward one batch of pending receipts; returns how many were claimed.

        Normally only receipts older than the minimum age are taken (younger ones belong to the
        forwarder of the ingestor that stored them); while degraded or catching up after an
        outage, every pending receipt is, so the backlog drains within one sweep interval of
        the dispatch service (and the database) answering again."""
        catching_up = self._degraded or self._catching_up
        if self._degraded:
            min_age = 0.0  # fresh receipts are not forwarded meanwhile: take every one
        elif catching_up:
            min_age = CATCH_UP_MIN_AGE_SECONDS  # younger ones are on the fresh path
        else:
            min_age = self._settings.webhook_sweep_min_age_seconds
        async with self._engine.begin() as conn:
            receipts = await inbox.claim_pending(
                conn, limit=self._settings.webhook_forward_batch_receipts, min_age_seconds=min_age
            )
            if not receipts:
                if catching_up and not self._degraded and time.monotonic() >= self._catch_up_until:
                    self._catching_up = False  # nothing left behind: fresh receipts flow again
                return 0
            # Catching up, it takes receipts a second old, some of which may still wait in this
            # forwarder's queue during a backlog: they are the sweeper's now, not forwarded twice.
            self._unqueue({r.id for r in receipts})
            # The sweeper holds these receipts (FOR NO KEY UPDATE) until it commits, so it
            # settles them itself, in this transaction, rather than asking ApplyStatus to.
            by_id = {r.id: r for r in receipts}
            left: list[Settlement] = []
            for work in await self._plan(conn, receipts):
                left += await self._sweep_plan(conn, work, by_id)
            applied = self._count(await settle(conn, left), left, "sweep")
        if applied:
            log.info("swept %d pending receipts: applied", applied, extra={"count": applied})
        return len(receipts)

    async def _sweep_plan(
        self, conn: AsyncConnection, work: Plan, receipts: dict[uuid.UUID, Receipt]
    ) -> list[Settlement]:
        """Forward one plan of the sweep. When the dispatch service refuses the request itself
        (not an outage: REFUSED_CODES) and it carries several receipts, each half is planned and
        forwarded again, down to the receipt that is refused: that one stays pending (its
        attempts grow, so later sweeps take it after the others) and the rest are applied. One
        receipt the service cannot apply never holds back the ones batched with it."""
        outcome = await self._call(work, attempts=1)
        if not (isinstance(outcome, str) and outcome in REFUSED_CODES and len(work.forwarded) > 1):
            return self._left_to_settle(work, outcome, "sweep")
        ids = [s.receipt_id for s in work.forwarded]
        left = list(work.settled)
        for half in (ids[: len(ids) // 2], ids[len(ids) // 2 :]):
            for part in await self._plan(conn, [receipts[i] for i in half]):
                left += await self._sweep_plan(conn, part, receipts)
        return left

    # --- shared ------------------------------------------------------------------------------

    async def _plan(self, db: AsyncConnection | AsyncEngine, receipts: list[Receipt]) -> list[Plan]:
        return await plan(db, receipts, self._senders, self._settings.webhook_forward_batch_updates)

    async def _call(self, work: Plan, *, attempts: int) -> pb.ApplyStatusResponse | str:
        """Send the plan's request: its response, or the last error's code name."""
        if not work.update_count:
            return pb.ApplyStatusResponse()
        error = "not attempted"
        for attempt in range(1, attempts + 1):
            try:
                response: pb.ApplyStatusResponse = await self._stub.ApplyStatus(
                    work.request,
                    timeout=self._settings.webhook_forward_deadline_seconds,
                    metadata=self._metadata,
                )
            except aio.AioRpcError as failure:
                error = failure.code().name
                metrics.FORWARD_CALLS.labels(error).inc()
                self._call_log.failed(failure)
                if failure.code() not in TRANSIENT_CODES or attempt == attempts:
                    # Whatever the cause (an outage, a wrong token), stop calling per receipt
                    # and let the sweeper retry everything once per interval. A request the
                    # service refused (REFUSED_CODES) says nothing of the others: the fresh path
                    # goes on, and the sweeper splits the refused batch (_sweep_plan).
                    if error not in REFUSED_CODES:
                        self._degraded = True
                    self.catch_up()
                    break
                backoff = self._settings.webhook_forward_backoff_seconds * 2 ** (attempt - 1)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            else:
                if self._degraded:
                    # Receipts handed over while degraded were left to the sweeper, and one stored
                    # after its last claim is younger than the catch-up age now: catching up
                    # lasts until a sweep made after it is that old finds nothing.
                    self._degraded = False
                    self.catch_up()
                self._call_log.succeeded()
                metrics.FORWARD_CALLS.labels("ok").inc()
                r = work.request
                metrics.UPDATES_FORWARDED.labels("statuses").inc(len(r.statuses))
                metrics.UPDATES_FORWARDED.labels("preferences").inc(len(r.preferences))
                metrics.UPDATES_FORWARDED.labels("inbound_texts").inc(len(r.inbound_texts))
                return response
        return error

    def _left_to_settle(
        self, work: Plan, outcome: pb.ApplyStatusResponse | str, path: str
    ) -> list[Settlement]:
        """What the ingestor must still record on the plan's receipts after its call: all of
        them but those ApplyStatus settled itself (counted here)."""
        if isinstance(outcome, str):  # the call failed: its receipts stay pending
            failed = f"ApplyStatus: {outcome}"
            return [
                *work.settled,
                *(
                    Settlement(s.receipt_id, ReceiptState.PENDING, error=failed)
                    for s in work.forwarded
                ),
            ]
        done = {uuid.UUID(r.receipt_id): r.lag_seconds for r in outcome.settled_receipts}
        if done:
            settled = [
                Settled(s.receipt_id, ReceiptState.APPLIED, s.flag, done[s.receipt_id])
                for s in work.forwarded
                if s.receipt_id in done
            ]
            self._count(settled, work.forwarded, path)
        return [*work.settled, *(s for s in work.forwarded if s.receipt_id not in done)]

    @staticmethod
    def _count(settled: Sequence[Settled], settlements: Sequence[Settlement], path: str) -> int:
        """Count settled receipts in the metrics; returns how many were applied."""
        by_id = {s.receipt_id: s for s in settlements}
        applied = 0
        for receipt in settled:
            if receipt.state == ReceiptState.APPLIED:
                metrics.FORWARD_LAG.observe(receipt.lag_seconds)
                applied += 1
            if receipt.state == ReceiptState.PENDING:
                continue
            metrics.RECEIPTS_SETTLED.labels(receipt.flag or receipt.state, path).inc()
            settlement = by_id[receipt.receipt_id]
            if settlement.unreadable:
                metrics.ITEMS_UNREADABLE.inc(settlement.unreadable)
            for subject in settlement.ignored:
                metrics.CHANGES_IGNORED.labels(subject).inc()
        return applied


def _weight(receipt: Receipt) -> int:
    """A receipt's updates, roughly (bodies are parsed later): 200 bytes per status is
    conservative."""
    return max(1, len(receipt.body) // 200)


def _settlement_message(settlement: Settlement) -> pb.ReceiptSettlement:
    """A forwarded receipt's settlement as ApplyStatus takes it."""
    return pb.ReceiptSettlement(
        receipt_id=str(settlement.receipt_id),
        flag=settlement.flag or "",
        phone_number_id=settlement.phone_number_id or "",
        workspace_id=str(settlement.workspace_id) if settlement.workspace_id else "",
        notes_json=settlement.notes or "",
    )
