"""One claim: a transaction that takes send slots and due messages and leases them.

In one transaction, in this lock order (the same everywhere, so claims never deadlock):

1. the sender's schedule row (FOR UPDATE): every replica's claims for a sender take turns here,
   and the slots it offers bound the claim;
2. the run row (FOR NO KEY UPDATE): CancelRun, ResumeRun and a pause wait for the claim, or the
   claim sees the run is no longer active and takes nothing; a queued run starts dispatching;
3. with a messaging limit on the workspace: the claim takes no more than the unique recipients
   the moving 24 h window of the sender's business portfolio (every sender of its WABA) has
   left, after the portfolio's other claims (a transaction-scoped advisory lock per WABA); with
   none left, the run's due messages are held until the window frees (domain/messaging_limit.py);
4. due queued messages of the run (FOR UPDATE SKIP LOCKED, so replicas never wait on each
   other's rows), none of a run past its deadline;
5. do-not-message is checked again: a phone added since the precheck is blocked now, with its
   reason persisted (the mark checks once more, just before the request leaves);
6. quiet hours: a message whose recipient's local time is outside the run's sending window is
   held (stays queued, due at the next opening; domain/quiet_hours.py);
7. the rest are leased to this replica (they stay `queued`) until `claim_lease_seconds` past
   their slot (``claimed``), and the slots they use are consumed.

A claim does not make a message `sending`: the replica does that just before it writes the
request (dispatcher.worker, ``message_transitions.mark_attempting``: ``attempted``). A replica
killed in between leaves `queued` rows whose lease runs out, and they are claimed again: only a
message whose request may have left is ever ambiguous.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import HoldReason
from dispatch_service.dispatcher.metrics import SENDS
from dispatch_service.dispatcher.rate_limiter import SenderRateLimiter
from dispatch_service.domain.quiet_hours import next_opening, parse_window
from dispatch_service.domain.template_variables import zone as event_zone
from dispatch_service.persistence.claims import (
    ActiveRun,
    ClaimCandidate,
    lock_claimable,
    lock_run_for_claim,
)
from dispatch_service.persistence.message_transitions import (
    block_at_send,
    hold,
    hold_due,
    lease_claimed,
)
from dispatch_service.persistence.messaging_limit import allowance, lock_portfolio


@dataclass(frozen=True)
class ClaimedMessage:
    """A message this replica leased (still `queued`), to be sent at its slot."""

    id: uuid.UUID
    run: ActiveRun
    phone_e164: str
    variables: tuple[str, ...]
    attempt: int
    """This call's number (1-based): attempt_count after the claim."""
    send_at: float
    """The slot, on this process's time.monotonic() clock."""
    probe: bool = False
    """The one message let out to test a provider in outage."""
    language: str | None = None
    """The template translation to send (None: the run's language)."""
    lease: datetime | None = None
    """The lease this replica holds the message under (the claim's, then the mark's): a give
    back only touches the message while it still holds exactly this lease."""
    claimed_at: datetime | None = None
    """When its claim locked the sender's schedule (the database's clock): its slot is from
    the schedule as it was then, so a 130429 recorded under a later lock of the same row
    makes it a slot at the old rate. One row lock orders the two, so the database's clock
    compares them exactly (this process's clock would date the claim by when it asked, before
    a wait for that lock)."""


@dataclass(frozen=True)
class ClaimResult:
    """What one claim took, and when trying again could be worthwhile."""

    messages: list[ClaimedMessage]
    blocked: int
    run_active: bool
    """False when the run stopped accepting claims (paused, cancelled, completed)."""
    exhausted: bool
    """True when the run had fewer due messages than the claim could take."""
    wait_seconds: float
    """How long until the sender has a worthwhile batch of slots again, when none was free or
    this claim took some (else 0: nothing was due, the run stopped, or it is held for the
    messaging limit)."""
    outage: bool = False
    """The sender is in a provider outage (only probes go out)."""
    lapsed_seconds: float = 0.0
    """How far the sender's schedule had fallen behind this claim's first possible slot
    (send_rate.lapsed_seconds): slots nobody took, when the sender had messages due."""


@dataclass(frozen=True)
class ClaimSettings:
    """Who claims, and how long past its slot a claimed (not yet attempted) message stays
    leased to it."""

    owner: str
    claim_lease_seconds: float


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    limiter: SenderRateLimiter,
    run: ActiveRun,
    limit: int,
    settings: ClaimSettings,
    lead_seconds: float = 0.0,
) -> ClaimResult:
    """Claim up to `limit` due messages of `run` (one transaction; see the module docstring),
    into slots no sooner than `lead_seconds` from now (domain.send_rate)."""
    async with sessions() as session, session.begin():
        reservation = await limiter.reserve(session, run.sender, limit, lead_seconds)
        outage = reservation.outage is not None
        if reservation.slots.count == 0:
            return ClaimResult([], 0, True, False, reservation.wait_seconds, outage)
        if await lock_run_for_claim(session, run.id) is None:
            return ClaimResult([], 0, False, True, 0.0, outage)
        wanted = min(limit, reservation.slots.count)
        if run.messaging_limit is not None:
            await lock_portfolio(session, run.sender)
            window = await allowance(session, run.sender, run.messaging_limit)
            if window.frees_at is not None:
                await hold_due(session, run.id, window.frees_at, HoldReason.MESSAGING_LIMIT)
                return ClaimResult([], 0, True, True, 0.0, outage)
            wanted = min(wanted, window.remaining or 0)
        candidates = await lock_claimable(session, run.id, run.workspace_id, wanted)
        blocked = [c.id for c in candidates if c.do_not_message]
        await block_at_send(session, blocked)
        sendable = await _hold_quiet_hours(
            session, run, [c for c in candidates if not c.do_not_message], reservation.db_now
        )
        slots = [reservation.slots.at(i) for i in range(len(sendable))]
        lease = timedelta(seconds=settings.claim_lease_seconds)
        await lease_claimed(
            session, [c.id for c in sendable], [s + lease for s in slots], settings.owner
        )
        await limiter.commit(session, reservation, len(sendable))
    if blocked:
        SENDS.labels("blocked").inc(len(blocked))
    messages = [
        ClaimedMessage(
            id=c.id,
            run=run,
            phone_e164=c.phone_e164,
            variables=c.variables,
            attempt=c.attempt_count + 1,
            send_at=reservation.monotonic_at(slot),
            probe=outage,
            language=c.language,
            lease=slot + lease,
            claimed_at=reservation.db_now,
        )
        for c, slot in zip(sendable, slots, strict=True)
    ]
    wait = limiter.wait_after(reservation, len(sendable)) if sendable else 0.0
    lapsed = 0.0 if outage else reservation.lapsed_seconds()
    return ClaimResult(
        messages,
        len(blocked),
        True,
        len(candidates) < wanted,
        wait,
        outage,
        lapsed_seconds=lapsed,
    )


async def _hold_quiet_hours(
    session: AsyncSession, run: ActiveRun, candidates: list[ClaimCandidate], now: datetime
) -> list[ClaimCandidate]:
    """Hold the candidates outside the run's sending window (see the module docstring); the
    others, to send now."""
    if run.send_window is None:
        return candidates
    window = parse_window(run.send_window)
    zone = event_zone(run.time_zone)
    sendable, held, until = [], [], []
    for candidate in candidates:
        opening = next_opening(window, candidate.phone_e164, now, zone)
        if opening is None:
            sendable.append(candidate)
        else:
            held.append(candidate.id)
            until.append(opening)
    await hold(session, held, until, HoldReason.QUIET_HOURS)
    return sendable
