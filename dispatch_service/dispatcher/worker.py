"""The dispatcher: a background worker inside the dispatch service (several replicas may run).

Three cooperating loops per replica:

* claim loop: for each active run (round robin per sender) claim due messages into send slots
  (dispatcher.claims: leased, still `queued`), as long as this replica has room (`concurrency`
  messages claimed and not yet recorded), then start one task per message that waits for its
  slot and calls the provider;
* marker loop: `mark_lead_seconds` before its slot a message is marked `sending` (the moments
  rounded down to a `mark_group_seconds` grid, so the messages of neighbouring slots share one
  statement, committed on its own): the at-most-once point comes just before the request is
  written, so a crash leaves ambiguous only what was about to leave or had left;
* flush loop: outcomes are written in batches every `flush_seconds` (dispatcher.results), at
  once when no send is left to add to the batch; a failed write is retried, the outcomes stay
  in memory meanwhile;
* reconciler loop: completes runs, fails unknown outcomes after their window
  (dispatcher.reconciler).

The rate cap holds at the wire: a request may be written only inside its slot's window
(`rate.late_tolerance_seconds` after it). The provider checks the window again once it has a
connection in hand (providers.aiohttp_transport), so a request that waited in the connection
pool, behind a slow connect or an event-loop stall is not written at all (NotSent) and its
message goes back to `queued` with its attempt given back.

Stopping (`stop()`): no more claims; messages waiting for their slot are released unsent (back
to `queued`); provider calls in flight finish and are recorded. A hard kill leaves claimed
messages `queued` under a lease that runs out `claim_lease_seconds` after their slot (then any
replica claims them again), and `sending` only those marked just before their request (and the
calls in flight): never re-sent, a webhook or the reconciler settles them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db.engine import driver_autocommit, outside_transaction
from common.outages import OutageLog, is_outage_error
from dispatch_service.dispatcher.claims import ClaimedMessage, ClaimResult, ClaimSettings, claim
from dispatch_service.dispatcher.metrics import IN_FLIGHT, SCHEDULE_LAPSED, SLOT_LATENESS
from dispatch_service.dispatcher.rate_limiter import (
    OutagePolicy,
    OutageWatch,
    SenderRateLimiter,
)
from dispatch_service.dispatcher.reconciler import Reconciler
from dispatch_service.dispatcher.results import (
    Released,
    Result,
    RetryPolicy,
    observe,
    write_results,
)
from dispatch_service.dispatcher.run_wakeups import RunWakeups, conninfo
from dispatch_service.domain.retry import Backoff
from dispatch_service.domain.runs import ACTIVE_RUN_STATES
from dispatch_service.domain.send_rate import RateSettings
from dispatch_service.persistence.claims import ActiveRun, active_runs, run_states
from dispatch_service.persistence.message_transitions import mark_attempting
from dispatch_service.providers.base import NotSent, Provider, SendOutcome, TemplateSend
from dispatch_service.settings import SendSettings

log = logging.getLogger(__name__)

RUNS_REFRESH_SECONDS = 0.5
STATES_REFRESH_SECONDS = 0.1
FLUSH_RETRY_SECONDS = 0.5
SINGLE_WRITE_ATTEMPTS = 3
FLUSH_WRITERS = 3
MAX_BATCH = 500
OUTAGE_RETRY_CAP_SECONDS = 5.0
MAX_MARK_LEAD_SECONDS = 0.15
MARK_GROUP_SECONDS = 0.01
MAX_CLAIM_LEAD_SECONDS = 0.25
STALE_AVERAGE_SECONDS = 1.0


@dataclass(frozen=True)
class DispatcherConfig:
    """The dispatcher's tunables (built from SendSettings, or directly by tests)."""

    rate: RateSettings
    retry: RetryPolicy
    concurrency: int
    claim_batch_size: int
    poll_seconds: float
    flush_seconds: float
    reconcile_seconds: float
    lease_seconds: float
    """How long past its slot a `sending` message stays leased (covers the call)."""
    outcome_unknown_seconds: float
    mark_lead_seconds: float = 0.01
    """How long before its slot a message is marked `sending`, at least (the dispatcher marks
    earlier when marks take longer: twice their recent round trip, at most 150 ms; a mark that
    ends past the slot's window releases the message unsent)."""
    mark_group_seconds: float = MARK_GROUP_SECONDS
    """The grid the moments of asking for marks are rounded down to (Marker.ask_at): the
    messages whose marks come due within one step of it are marked by one statement."""
    claim_lease_seconds: float = 2.0
    """How long past its slot a claimed, not yet attempted message stays leased to its replica
    (after a crash it is claimed again once this has passed)."""
    outage: OutagePolicy = field(default_factory=OutagePolicy)
    """When a provider outage pauses a sender, and how it is probed."""

    @classmethod
    def from_settings(cls, settings: SendSettings) -> DispatcherConfig:
        """The configuration the service's settings describe."""
        return cls(
            rate=RateSettings(
                messages_per_second=settings.dispatch_rate_per_second,
                headroom=settings.dispatch_rate_headroom,
                horizon_seconds=settings.dispatch_schedule_horizon_seconds,
                recovery_per_second=settings.dispatch_rate_recovery_per_second,
                throttle_backoff_seconds=settings.dispatch_throttle_backoff_seconds,
            ),
            retry=RetryPolicy(
                max_attempts=settings.dispatch_max_attempts,
                backoff=Backoff(
                    settings.dispatch_backoff_base_seconds, settings.dispatch_backoff_cap_seconds
                ),
                defer_seconds=settings.dispatch_marketing_limit_defer_seconds,
            ),
            concurrency=settings.dispatcher_concurrency,
            claim_batch_size=settings.dispatcher_claim_batch_size,
            mark_lead_seconds=settings.dispatcher_mark_lead_seconds,
            poll_seconds=settings.dispatcher_poll_seconds,
            flush_seconds=settings.dispatcher_flush_seconds,
            reconcile_seconds=settings.dispatcher_reconcile_seconds,
            lease_seconds=settings.dispatch_lease_seconds
            + settings.dispatch_provider_timeout_seconds,
            outcome_unknown_seconds=settings.dispatch_outcome_unknown_seconds,
            outage=OutagePolicy(
                threshold=settings.dispatch_outage_threshold,
                probe_seconds=settings.dispatch_outage_probe_seconds,
                probe_cap_seconds=max(
                    settings.dispatch_outage_probe_seconds,
                    settings.dispatch_outage_probe_cap_seconds,
                ),
            ),
        )


async def sleep_until(moment: float) -> None:
    """Return once time.monotonic() has reached `moment`, never before: a send must not leave
    ahead of its slot (it could land in the second before and push that one over the rate).
    One sleep is not enough on uvloop, whose timers count whole milliseconds and wake up to
    1.3 ms early (measured); asyncio's own loop never wakes early, and loops once here."""
    while (left := moment - time.monotonic()) > 0:  # noqa: ASYNC110 - waits for the clock, no task
        await asyncio.sleep(left)


def replica_name() -> str:
    """A lease owner name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Lapse:
    """One round of claims for a sender: the schedule time it lost since its previous round
    here, counted once, from the round's first claim that took messages, when the previous
    round left messages due in any of its runs (SCHEDULE_LAPSED; a sender that was idle lost
    nothing)."""

    sender: str
    backlogged: bool
    took: bool = False

    def claimed(self, result: ClaimResult) -> None:
        if result.messages and not self.took:
            self.took = True
            if self.backlogged:
                SCHEDULE_LAPSED.labels(self.sender).inc(result.lapsed_seconds)


class Dispatcher:
    """Claims, sends and records invite messages until stopped."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider: Provider,
        config: DispatcherConfig,
        *,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.config = config
        self.owner = owner or replica_name()
        self.rng = rng or random.Random()
        self.limiter = SenderRateLimiter(config.rate, config.outage)
        self.outages = OutageWatch(config.outage.threshold)
        self._outage_writes: set[asyncio.Task[None]] = set()
        self.reconciler = Reconciler(sessions, config.outcome_unknown_seconds)
        self._claim_settings = ClaimSettings(
            owner=self.owner, claim_lease_seconds=config.claim_lease_seconds
        )
        # The mark's lease is the claim's (slot + claim_lease_seconds) extended to slot +
        # lease_seconds: a lease the worker can compute (Marker).
        self._marker = Marker(
            partial(driver_autocommit, sessions),
            self.owner,
            timedelta(seconds=config.lease_seconds - config.claim_lease_seconds),
            group=config.mark_group_seconds,
        )
        self._reserved = 0
        self._room = asyncio.Event()
        """Wakes the claim loop: a run became claimable, the worker stops, or (only while the
        loop waits for room, `_needs_room`) results were written and their places freed."""
        self._needs_room = False
        self._stopping = asyncio.Event()
        self._results: list[Result] = []
        self._have_results = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._no_sends = asyncio.Event()
        """Set while no send task is alive: a batch of results then waits for nothing more."""
        self._no_sends.set()
        self._task_runs: dict[asyncio.Task[None], uuid.UUID] = {}
        self._states_at = 0.0
        self._stopped_runs: set[uuid.UUID] = set()
        self._runs: list[ActiveRun] = []
        self._runs_at = 0.0
        self._turn: dict[str, int] = defaultdict(int)
        self._claim_at: dict[str, float] = {}
        """When each sender is next worth a claim (time.monotonic())."""
        self._throttled_at: dict[str, datetime] = {}
        """When this replica last lowered each sender's shared rate after a 130429 (the
        database's clock, under the schedule's lock): messages it claimed under an earlier lock
        are given back unsent."""
        self._backlogged: set[str] = set()
        """Senders whose last claim here took messages and left more due: if the next claim
        finds their schedule lapsed, those slots were lost (SCHEDULE_LAPSED)."""
        self._claim_round_trip = RecentAverage()
        """How long a claim takes (seconds)."""
        self._loops: list[asyncio.Task[None]] = []
        self._claim_log = OutageLog(log, "claiming messages")
        self._write_log = OutageLog(log, "writing send results")
        self._throttle_log = OutageLog(log, "lowering a sender's rate after a 130429")
        self._reconcile_log = OutageLog(log, "reconciliation")
        bind = sessions.kw.get("bind")
        self.wakeups = None
        """Listens for runs becoming claimable (None without a Postgres engine)."""
        if isinstance(bind, AsyncEngine):
            self.wakeups = RunWakeups(conninfo(bind.url), self._new_runs)

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()` (or cancellation, which stops gracefully too)."""
        log.info("dispatcher %s starting", self.owner)
        flusher = asyncio.create_task(self._flush_loop(), name="dispatcher-flush")
        reconciler = asyncio.create_task(self._reconcile_loop(), name="dispatcher-reconcile")
        marker = asyncio.create_task(self._marker.run(), name="dispatcher-mark")
        self._loops = [flusher, reconciler, marker]
        if self.wakeups is not None:
            self._loops.append(asyncio.create_task(self.wakeups.run(), name="dispatcher-wakeups"))
        try:
            await self._claim_loop()
        finally:
            await self._drain()
            for loop in self._loops[1:]:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            log.info("dispatcher %s stopped", self.owner)

    def _new_runs(self) -> None:
        """A run became claimable (run_wakeups): reload the active runs and claim now."""
        self._runs_at = float("-inf")
        self._claim_at.clear()
        self._room.set()

    def stop(self) -> None:
        """Ask the dispatcher to stop: no new claims; in-flight calls finish and are recorded."""
        self._stopping.set()
        self._room.set()

    async def _drain(self) -> None:
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._have_results.set()
        flusher = self._loops[0]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(flusher)

    # --- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                # Cleared before the round, not before the wait: a wake-up that comes during
                # the round (a new run, freed room) then cuts the wait after it short.
                self._room.clear()
                try:
                    pause = await self._claim_round()
                    self._claim_log.succeeded()
                except Exception as error:
                    self._claim_log.failed(error)
                    pause = self.config.poll_seconds
                if pause > 0:
                    await self._wait(pause)
        except asyncio.CancelledError:
            self._stopping.set()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), seconds)

    async def _claim_round(self) -> float:
        """Claim what there is room and slots for; returns how long to wait before the next.

        No empty claims: a sender is claimed for only once the wait its last claim gave has
        passed (its next worthwhile batch of slots), and written results wake the loop only
        when it waits for room. Before, every flush (every 20 ms) woke it and each wake-up
        claimed for every sender: two to four empty claims, each a transaction on the
        sender's schedule row, for every claim that took messages."""
        self._needs_room = False
        await self._refresh()
        if self._free() <= 0:
            self._needs_room = True
            return self.config.poll_seconds
        by_sender: dict[str, list[ActiveRun]] = defaultdict(list)
        for run in self._runs:
            if run.id not in self._stopped_runs:
                by_sender[run.sender].append(run)
        # A sender with nothing to claim here any more (its runs paused, cancelled, or sent
        # by another replica) has no backlog: the time until its next run is idle, not lost.
        self._backlogged.intersection_update(by_sender)
        if not by_sender:
            return self.config.poll_seconds
        waits = []
        for sender, runs in by_sender.items():
            due = self._claim_at.get(sender, 0.0) - time.monotonic()
            if due > 0:
                waits.append(due)
                continue
            wait = await self._claim_for_sender(sender, runs)
            self._claim_at[sender] = time.monotonic() + wait
            waits.append(wait)
        return min(waits)

    async def _claim_for_sender(self, sender: str, runs: Sequence[ActiveRun]) -> float:
        start = self._turn[sender]
        lapse = _Lapse(sender, sender in self._backlogged)
        for offset in range(len(runs)):
            free = self._free()
            if free <= 0 or self._stopping.is_set():
                self._needs_room = True
                return self.config.poll_seconds
            run = runs[(start + offset) % len(runs)]
            limit = min(self.config.claim_batch_size, free)
            began = time.perf_counter()
            result = await claim(
                self.sessions, self.limiter, run, limit, self._claim_settings, self._lead()
            )
            took = time.perf_counter() - began
            self._claim_round_trip.add(took)
            log.debug(
                "claimed %d in %.1f ms", len(result.messages), took * 1000, extra={"run_id": run.id}
            )
            if not result.run_active:
                self._stopped_runs.add(run.id)
            if result.outage:
                self.outages.in_outage.add(sender)
            else:
                self.outages.in_outage.discard(sender)
            for message in result.messages:
                self._schedule(message)
            lapse.claimed(result)
            # The wait is counted from the claim's lock: less what the claim took since.
            wait = max(0.001, result.wait_seconds - took) if result.wait_seconds > 0 else 0.0
            if result.messages and not result.exhausted:
                self._turn[sender] = start + offset + 1
                self._backlog(sender, not result.outage)  # this run has more due
                return wait  # the run has more: once the sender has slots again
            if not result.messages and wait > 0:
                # No slot yet: when an earlier run took this round's slots, this one is due.
                self._backlog(sender, lapse.took or None)
                return wait  # no slot for this sender yet
        self._turn[sender] = start + 1
        self._backlog(sender, False)  # every run was sent out, stopped or held
        return self.config.poll_seconds

    def _backlog(self, sender: str, due: bool | None) -> None:
        """Whether the sender leaves this round with messages due (None: as it was)."""
        if due is True:
            self._backlogged.add(sender)
        elif due is False:
            self._backlogged.discard(sender)

    def _free(self) -> int:
        return self.config.concurrency - self._reserved

    def _lead(self) -> float:
        """How soon the first slot of a claim may be (domain.send_rate): a slot sooner than the
        claim's own round trip plus a mark's, less the lateness a send may have, would be missed
        (recent averages; on a busy machine slots start later instead of being missed)."""
        lead = (
            self._claim_round_trip.value()
            + self._marker.round_trip.value()
            - self.config.rate.late_tolerance_seconds
        )
        return min(MAX_CLAIM_LEAD_SECONDS, max(0.0, lead))

    async def _refresh(self) -> None:
        """Reload active runs now and then, and learn which runs with messages held here
        stopped (paused, cancelled) meanwhile, so their waiting messages are not sent."""
        now = time.monotonic()
        if now - self._runs_at >= RUNS_REFRESH_SECONDS:
            async with outside_transaction(self.sessions) as session:
                self._runs = await active_runs(session)
            self._runs_at = now
            self._stopped_runs -= {run.id for run in self._runs}
        held = set(self._task_runs.values())
        if held and now - self._states_at >= STATES_REFRESH_SECONDS:
            async with outside_transaction(self.sessions) as session:
                states = await run_states(session, list(held))
            self._states_at = now
            self._stopped_runs |= {r for r, s in states.items() if s not in ACTIVE_RUN_STATES}
        self._stopped_runs &= held | {run.id for run in self._runs}

    # --- sending --------------------------------------------------------------------------

    def _schedule(self, message: ClaimedMessage) -> None:
        self._reserved += 1
        IN_FLIGHT.inc()
        task = asyncio.create_task(self._send_at_slot(message))
        self._tasks.add(task)
        self._no_sends.clear()
        self._task_runs[task] = message.run.id
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._task_runs.pop(task, None)
        if not self._tasks:
            self._no_sends.set()

    async def _send_at_slot(self, message: ClaimedMessage) -> None:
        window_ends = message.send_at + self.config.rate.late_tolerance_seconds
        mark_at = self._marker.ask_at(message.send_at, self.config.mark_lead_seconds)
        # A plain sleep (a wait_for on the stop event cost a task and a timer per message):
        # slots are at most the claim lead plus the horizon away, so a stop is seen soon.
        await sleep_until(mark_at)
        marked = None
        throttled = self._slot_before_throttle(message)
        if not (
            time.monotonic() > window_ends
            or self._stopping.is_set()
            or message.run.id in self._stopped_runs
            or (message.run.sender in self.outages.in_outage and not message.probe)
            or throttled
        ):
            marked = await self._marker.mark(message.id, message.lease)
        if marked is None:
            # Not attempted: the lease is given back (a no-op when the message is no longer
            # ours: cancelled, or taken over after the lease ran out). A mark whose answer was
            # lost may have committed all the same: the give back then names its lease too.
            possible = self._marker.uncertain.pop(message.id, None)
            self._record(Result(message, Released(possible_lease=possible, throttled=throttled)))
            return
        message = replace(message, lease=marked)  # from now on it is held by the mark's lease
        await sleep_until(message.send_at)
        lateness = time.monotonic() - message.send_at
        SLOT_LATENESS.observe(max(0.0, lateness))
        if self._slot_before_throttle(message):
            # A slot handed out before a 130429 lowered the rate: give it up, claim it again.
            self._record(Result(message, Released(throttled=True)))
            return
        if lateness > self.config.rate.late_tolerance_seconds:
            # A send far past its slot would land in a later second than the schedule gave
            # it and could push that second over the rate: give the slot up, claim it again.
            self._record(Result(message, Released()))
            return
        outcome = await self._call(message, window_ends)
        self._watch(message.run.sender, outcome)
        self._record(Result(message, Released() if isinstance(outcome, NotSent) else outcome))

    def _slot_before_throttle(self, message: ClaimedMessage) -> bool:
        """The message was claimed before this replica lowered its sender's rate (130429):
        its slot is from the old, faster schedule, and sending in it would keep calling at the
        rate the provider just refused. It is given back and claimed again on the lowered,
        paused schedule. (Other replicas learn of the 130429 at their next claim.)"""
        throttled = self._throttled_at.get(message.run.sender)
        claimed = message.claimed_at
        return throttled is not None and claimed is not None and claimed < throttled

    def _watch(self, sender: str, outcome: SendOutcome) -> None:
        """Count provider failures; declare or end the sender's outage (a short write)."""
        change = self.outages.observe(sender, outcome)
        if change is None:
            return
        if change == "trip":
            write = self.limiter.declare_outage(self.sessions, sender, self.outages.reason(sender))
        else:
            write = self.limiter.end_outage(self.sessions, sender)
        task = asyncio.create_task(self._outage_write(write))
        self._outage_writes.add(task)
        task.add_done_callback(self._outage_writes.discard)

    async def _outage_write(self, write: Coroutine[Any, Any, None]) -> None:
        try:
            await write
        except Exception as error:  # the database is away: the next answers decide again
            log.warning("recording a provider outage change failed: %s", error)

    async def _call(self, message: ClaimedMessage, not_after: float) -> SendOutcome:
        run = message.run
        send = TemplateSend(
            message_id=message.id,
            sender_id=run.sender,
            to_e164=message.phone_e164,
            template_name=run.template_name,
            language=message.language or run.language,
            body_parameters=message.variables,
            body_parameter_names=run.variable_names,
            send_plan=run.send_plan,
        )
        return await self.provider.send_template(send, not_after=not_after)

    def _record(self, result: Result) -> None:
        self._results.append(result)
        self._have_results.set()

    # --- recording ------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        """Write results in batches, several transactions at once (FLUSH_WRITERS): rows are
        locked in id order, so concurrent writers never deadlock."""
        writers: set[asyncio.Task[None]] = set()
        while True:
            if not self._results:
                if self._stopping.is_set() and not self._tasks and not writers:
                    return
                self._have_results.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._have_results.wait(), 1.0)
                continue
            # Gather what comes within flush_seconds, unless no send is left to bring any more
            # (the end of a run, a lone message): then the batch is written at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._no_sends.wait(), self.config.flush_seconds)
            if len(writers) >= FLUSH_WRITERS:
                await asyncio.wait(writers, return_when=asyncio.FIRST_COMPLETED)
            batch, self._results = self._results[:MAX_BATCH], self._results[MAX_BATCH:]
            writer = asyncio.create_task(self._write_and_release(batch))
            writers.add(writer)
            writer.add_done_callback(writers.discard)

    async def _write_and_release(self, batch: list[Result]) -> None:
        await self._write(batch)
        self._reserved -= len(batch)
        IN_FLIGHT.dec(len(batch))
        if self._needs_room:
            self._room.set()
        self._have_results.set()  # wakes the flush loop when it waits for the last writer

    async def _write(self, batch: list[Result]) -> None:
        """Write a batch. While the database is away (an outage error) the results stay in
        memory and the write is retried with a growing pause, however long the outage: a known
        provider outcome is never given up. Memory stays bounded because an unwritten result
        keeps its place among the `concurrency` messages this replica may hold, so nothing more
        is claimed meanwhile. Any other error: after a few attempts each row is written on its
        own, so one bad row cannot hold the others back."""
        failures = 0
        while True:
            try:
                await self._write_once(batch)
                self._write_log.succeeded()
                return
            except Exception as error:
                self._write_log.failed(error)
                if is_outage_error(error):
                    await asyncio.sleep(_outage_pause(failures))
                    failures += 1
                    continue
                failures += 1
                if len(batch) > 1 and failures >= SINGLE_WRITE_ATTEMPTS:
                    for result in batch:
                        await self._write_single(result)
                    return
                if failures >= SINGLE_WRITE_ATTEMPTS:
                    self._give_up(batch[0])
                    return
                await asyncio.sleep(FLUSH_RETRY_SECONDS)

    async def _write_single(self, result: Result) -> None:
        await self._write([result])

    @staticmethod
    def _give_up(result: Result) -> None:
        # Left `sending` (or leased): a webhook or the reconciler settles it; never re-sent.
        log.error(
            "could not record a send result; the message stays as it was",
            extra={"run_id": result.message.run.id, "message_id": result.message.id},
        )

    async def _write_once(self, batch: list[Result]) -> None:
        began = time.perf_counter()
        async with self.sessions() as session, session.begin():
            effects = await write_results(session, batch, self.config.retry, self.owner, self.rng)
        elapsed = (time.perf_counter() - began) * 1000
        log.debug("recorded %d results in %.1f ms", len(batch), elapsed)
        observe(batch, effects)
        self._stopped_runs |= effects.paused_runs
        for sender in effects.throttled_senders:
            # The results are committed: a failure here must not reach _write, whose retry
            # would write them (and count them) again. The rate stays as it was until the
            # provider's next 130429, which lowers it then.
            try:
                self._throttled_at[sender] = await self.limiter.throttle(self.sessions, sender)
                self._throttle_log.succeeded()
            except Exception as error:
                self._throttle_log.failed(error)

    # --- reconciling ----------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconciler.reconcile()
                self._reconcile_log.succeeded()
            except Exception as error:
                self._reconcile_log.failed(error)
            await asyncio.sleep(self.config.reconcile_seconds)


class RecentAverage:
    """A moving average of recent durations that forgets a quiet spell: measures older than
    STALE_AVERAGE_SECONDS say nothing about now (a run starting on an idle worker must not
    inherit the last busy minute's round trips), so it then reads 0 and the next measure
    starts it again."""

    def __init__(self, weight: float = 0.2) -> None:
        self._weight = weight
        self._value = 0.0
        self._at = float("-inf")

    def add(self, seconds: float) -> None:
        """One more measure."""
        now = time.monotonic()
        if now - self._at > STALE_AVERAGE_SECONDS:
            self._value = seconds
        else:
            self._value += self._weight * (seconds - self._value)
        self._at = now

    def value(self) -> float:
        """The average, or 0 after a quiet spell."""
        return self._value if time.monotonic() - self._at <= STALE_AVERAGE_SECONDS else 0.0


def _outage_pause(failures: int) -> float:
    """Pause before retrying a write during a database outage: 0.5 s doubling to 5 s."""
    return float(min(OUTAGE_RETRY_CAP_SECONDS, FLUSH_RETRY_SECONDS * 2 ** min(failures, 8)))


MarkConnection = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]
"""Where a mark runs: a driver connection in autocommit (common.db.engine.driver_autocommit),
so the mark's one statement commits before its rows come back."""

MarkAsked = tuple[uuid.UUID, datetime | None, asyncio.Future[datetime | None]]
"""A mark waiting for its statement: the message, the lease it is claimed under, its answer."""


class Marker:
    """Marks messages `sending` just before their slots, batching the ones that come due
    together into one statement (one in flight at a time: marks asked for meanwhile share the
    next one).

    The statement commits on its own, in one round trip: with BEGIN and COMMIT around it, each
    mark waited three times for Postgres and for this process to be scheduled again, and on a
    saturated machine those waits were most of why marks came back after their slot's window
    (the message then given back unsent: a slot lost, a write and a claim more). Measured with
    three senders at 1,000/s, in four pairs: 968-1,099 slots given back instead of 1,171-3,033,
    2,309-2,362 msg/s instead of 1,974-2,397 (docs/dispatch.md §10)."""

    def __init__(
        self,
        connection: MarkConnection,
        owner: str,
        extension: timedelta,
        group: float = MARK_GROUP_SECONDS,
    ) -> None:
        self.connection = connection
        self.owner = owner
        self.extension = extension
        """A marked message's lease is its claim's lease + this (mark_attempting)."""
        self.group = group
        """The grid of the moments marks are asked at (ask_at; 0: none)."""
        self._pending: list[MarkAsked] = []
        self._wake = asyncio.Event()
        self._log = OutageLog(log, "marking messages sending")
        self.uncertain: dict[uuid.UUID, datetime] = {}
        """Messages whose mark failed without an answer, with the lease the mark gave them if
        it committed nonetheless (the database went away after the statement reached it): the
        worker gives them back under that lease too, so they are neither sent twice nor left
        `sending` without a call."""
        self.round_trip = RecentAverage()
        """How long a mark takes from asking to answer (seconds)."""

    def lead(self, minimum: float) -> float:
        """How long before its slot to ask for a mark: twice the recent mark round trip (the
        wait for the previous batch included), at least `minimum`, at most MAX_MARK_LEAD.
        The busier the database, the earlier the mark, so slots are not missed."""
        return min(MAX_MARK_LEAD_SECONDS, max(minimum, 2 * self.round_trip.value()))

    def ask_at(self, slot: float, minimum: float) -> float:
        """When to ask for the mark of the message whose slot is `slot` (time.monotonic()):
        `lead(minimum)` before it, rounded down to the `group` grid, never more than
        MAX_MARK_LEAD_SECONDS before it (what a crash may leave ambiguous stays bounded).

        On the grid, every message whose mark comes due within one step asks at the same
        moment and shares one statement. Without it a mark took only the messages asked for
        while the one before was in flight, each statement a round trip and an UPDATE with its
        change-log trigger (bench/dispatch.py, three senders: 4,934 marks of 8.5 messages on
        average without the grid, 1,835 of 23 with it; Postgres CPU per message sent at one
        sender 521-547 µs without, 397-420 with)."""
        ask = slot - self.lead(minimum)
        if self.group > 0:
            ask = max(ask - ask % self.group, slot - MAX_MARK_LEAD_SECONDS)
        return ask

    async def mark(self, message_id: uuid.UUID, claim_lease: datetime | None) -> datetime | None:
        """The lease of the call once the message is `sending` (it may be sent); None when it
        must not be. `claim_lease`: the lease it is claimed under."""
        future: asyncio.Future[datetime | None] = asyncio.get_running_loop().create_future()
        self._pending.append((message_id, claim_lease, future))
        self._wake.set()
        asked = time.monotonic()
        try:
            return await future
        finally:
            took = time.monotonic() - asked
            self.round_trip.add(took)

    async def run(self) -> None:
        """Serve marks until cancelled."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._pending = self._pending, []
                if batch:
                    await self._mark(batch)
        finally:
            for _, _, future in self._pending:
                if not future.done():
                    future.set_result(None)

    async def _mark(self, batch: list[MarkAsked]) -> None:
        marked: dict[uuid.UUID, datetime] = {}
        try:
            async with self.connection() as connection:
                marked = await mark_attempting(
                    connection, [m for m, _, _ in batch], self.owner, self.extension
                )
            self._log.succeeded()
        except Exception as error:  # the database is away: nothing is sent
            # Only a mark whose rows came back is committed for sure. Without an answer the
            # statement may or may not have committed: the messages are either still `queued`
            # under their claim lease (claimed again once it runs out) or `sending` under the
            # lease the mark gives, which is known here; both are given back.
            self._log.failed(error)
            marked = {}
            self.uncertain.update(
                (message_id, claim_lease + self.extension)
                for message_id, claim_lease, _ in batch
                if claim_lease is not None
            )
        for message_id, _, future in batch:
            if not future.done():
                future.set_result(marked.get(message_id))
