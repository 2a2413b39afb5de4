"""The per-sender send schedule shared by all dispatcher replicas (pure; stored in Postgres).

A GCRA ("generic cell rate algorithm") limiter: the schedule keeps `next_slot_at`, the earliest
moment the next message may go out. Taking k slots hands out the moments
`start, start + 1/r, ..., start + (k-1)/r` with `start = max(next_slot_at, now + lead)` and
moves `next_slot_at` to `start + k/r`. Replicas take slots inside one row lock, so sends of all
replicas together are spaced 1/r apart: there is no burst, and any one-second window holds at
most r of them. Slots are only handed out up to `horizon` seconds past `now + lead`, so a
replica never holds (and, if killed, never strands) more than about r * (lead + horizon)
claimed messages.

`lead` is how long the claiming replica needs before it can send a message it is claiming now
(the rest of its claim transaction, then the mark that comes before each request): a slot
sooner than that would be missed, and a missed slot is a message released unsent and a slot
nobody uses. A sender whose schedule fell behind `now` (its replica was busy with other
senders) starts again at `now + lead` instead of spending its first slots on messages that
cannot make them.

r = configured rate * (1 - headroom) * rate_factor:

* headroom keeps the schedule below the provider's cap, because the moment a request reaches
  the provider jitters around its slot (a busy process starts it late; the network and the
  provider add more). A send that would start later than `late_tolerance_seconds` past its
  slot is not started at all (the message goes back to the queue), which bounds the first part
  to a third of the headroom; the other two thirds are for the second;
* rate_factor (0..1] drops to half on a 130429 (at most once per `halve_interval`), pushes the
  schedule back by `backoff`, and recovers linearly by `recovery_per_second` to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MIN_RATE_FACTOR = 1 / 64


MIN_MESSAGES_PER_SECOND = 3
"""The slowest cap the schedule keeps. At 2/s or less even the largest headroom (half the rate)
leaves no time to start a send late (`late_tolerance_seconds` is 0), so every send would be
given up at its slot and nothing would ever go out; at 3/s a send may start 0.11 s late."""

MIN_HEADROOM = 0.05
MIN_HEADROOM_SLOTS = 3
LATE_SHARE = 1 / 3
"""The share of the headroom a send may spend starting late; the rest is for the wire."""


@dataclass(frozen=True)
class RateSettings:
    """The tunables of one sender's schedule."""

    messages_per_second: float
    headroom: float = 0.1
    horizon_seconds: float = 0.4
    recovery_per_second: float = 0.05
    throttle_backoff_seconds: float = 1.0
    halve_interval_seconds: float = 1.0

    @property
    def effective_headroom(self) -> float:
        """The headroom, but never less than 5% or MIN_HEADROOM_SLOTS slots a second (less
        would leave a late-start tolerance of a few milliseconds: most sends given up)."""
        floor = max(MIN_HEADROOM, MIN_HEADROOM_SLOTS / self.messages_per_second)
        return min(0.5, max(self.headroom, floor))

    @property
    def late_tolerance_seconds(self) -> float:
        """How late past its slot a send may still start.

        Sends that start within L of their slots put at most r * (1 + L) + 1 of them in any
        one-second window (r = the schedule's rate). A third of the headroom is spent on this
        lateness (LATE_SHARE), so that r * (1 + L) + 1 <= rate - two thirds of the headroom;
        those two thirds absorb the jitter between writing a request and the provider counting
        it (the network, the provider's own queues): measured on two loaded cores, the sandbox
        counted sends up to 58 ms after they were written, more than the lateness it allows.
        """
        rate, headroom = self.messages_per_second, self.effective_headroom
        return max(0.0, LATE_SHARE * (headroom * rate - 1) / (rate * (1 - headroom)))


@dataclass(frozen=True)
class SendSchedule:
    """The stored state of one sender's schedule."""

    next_slot_at: datetime
    rate_factor: float
    rate_factor_at: datetime


def current_factor(schedule: SendSchedule, now: datetime, settings: RateSettings) -> float:
    """The rate factor at `now`, recovered linearly since it was last lowered."""
    elapsed = max(0.0, (now - schedule.rate_factor_at).total_seconds())
    return min(1.0, schedule.rate_factor + elapsed * settings.recovery_per_second)


def effective_rate(schedule: SendSchedule, now: datetime, settings: RateSettings) -> float:
    """Messages per second the schedule hands out at `now`."""
    factor = current_factor(schedule, now, settings)
    return settings.messages_per_second * (1.0 - settings.effective_headroom) * factor


@dataclass(frozen=True)
class Slots:
    """Slots handed out: `count` moments from `first`, `interval` seconds apart."""

    count: int
    first: datetime
    interval: float

    def at(self, index: int) -> datetime:
        """The moment of slot `index` (0-based)."""
        return self.first + timedelta(seconds=index * self.interval)


def batch_floor(schedule: SendSchedule, now: datetime, settings: RateSettings, limit: int) -> int:
    """The fewest slots worth a claim: half a horizon's worth (capped by `limit`), so replicas
    make a few large claims rather than a stream of one-message transactions."""
    half_horizon = int(effective_rate(schedule, now, settings) * settings.horizon_seconds / 2)
    return max(1, min(limit, half_horizon))


def available_slots(
    schedule: SendSchedule,
    now: datetime,
    settings: RateSettings,
    min_count: int = 1,
    lead_seconds: float = 0.0,
) -> Slots:
    """Every slot from the next free one, but not before now + lead, up to now + lead + horizon;
    none when fewer than `min_count`."""
    rate = effective_rate(schedule, now, settings)
    ready = now + timedelta(seconds=lead_seconds)
    start = max(schedule.next_slot_at, ready)
    room = (ready + timedelta(seconds=settings.horizon_seconds) - start).total_seconds()
    count = int(room * rate) + 1 if room >= 0 else 0
    return Slots(count=count if count >= min_count else 0, first=start, interval=1.0 / rate)


def lapsed_seconds(schedule: SendSchedule, now: datetime, lead_seconds: float = 0.0) -> float:
    """How long the schedule's next slot lies before the first slot a claim at `now` can have
    (`now + lead`): schedule time that passed with nobody claiming it, 0 when none did. Only a
    loss while the sender had messages due (its replica came late), not while it was idle."""
    ready = now + timedelta(seconds=lead_seconds)
    return max(0.0, (ready - schedule.next_slot_at).total_seconds())


def take(schedule: SendSchedule, slots: Slots, used: int) -> SendSchedule:
    """The schedule after the first `used` of `slots` were taken."""
    if used <= 0:
        return schedule
    return replace(schedule, next_slot_at=slots.at(used))


def wait_seconds(
    schedule: SendSchedule,
    now: datetime,
    settings: RateSettings,
    min_count: int = 1,
    lead_seconds: float = 0.0,
) -> float:
    """How long until a claim would get at least `min_count` slots (at least a millisecond)."""
    rate = effective_rate(schedule, now, settings)
    ready = now + timedelta(seconds=lead_seconds)
    start = max(schedule.next_slot_at, ready)
    due = start + timedelta(seconds=(min_count - 1) / rate - settings.horizon_seconds)
    return max(0.001, (due - ready).total_seconds())


def throttled(schedule: SendSchedule, now: datetime, settings: RateSettings) -> SendSchedule:
    """The schedule after the provider answered 130429: half the rate, and a pause."""
    pause_until = now + timedelta(seconds=settings.throttle_backoff_seconds)
    paused = replace(schedule, next_slot_at=max(schedule.next_slot_at, pause_until))
    lowered_recently = schedule.rate_factor < 1.0 and (
        (now - schedule.rate_factor_at).total_seconds() < settings.halve_interval_seconds
    )
    if lowered_recently:
        return paused  # many in-flight calls hit the same limit: halve once per interval
    factor = max(MIN_RATE_FACTOR, current_factor(schedule, now, settings) / 2)
    return replace(paused, rate_factor=factor, rate_factor_at=now)
