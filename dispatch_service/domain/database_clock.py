"""The database's clock on this process's time.monotonic() (pure).

Send slots are moments on the database's clock (every replica computes them against the one
clock, under the schedule's row lock), but a replica sleeps and checks lateness on its own
monotonic clock. Each schedule read gives one reading: the monotonic moment the query was sent
(`asked`), the database's clock while it answered (`db_now`) and the monotonic moment the answer
was read (`answered`). The offset between the clocks (monotonic minus database) then lies in
[asked - db_now, answered - db_now].

Taking `answered - db_now` of each reading as the offset (what a naive mapping does) puts that
claim's sends late by however long the answer waited: in the socket, behind a busy event loop,
behind a CPU another process held. That wait differs from claim to claim and from replica to
replica, so slots the schedule spaced 1/r apart reach the wire closer together, and any one
second holds more sends than the rate (two replicas on two cores under load were seen one send
over the provider's cap). The offset is the same for every reading, though, so the smallest
upper bound seen lately is the best estimate (NTP's minimum-delay filter): it is late by only
the fastest round trip seen, the same for every claim.

The estimate keeps the readings of the last `window_seconds`, so a slow drift between the
clocks (a different host's clock being slewed) is followed. A reading whose lower bound is above
the estimate proves it wrong (the database's clock stepped back): the older readings are
dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class DatabaseClock:
    """The best estimate of (monotonic - database) seconds, from recent readings."""

    window_seconds: float = 30.0
    _bounds: deque[tuple[float, float]] = field(default_factory=deque)
    """(answered, upper bound) of recent readings, upper bounds increasing from the left."""

    def observe(self, asked: float, answered: float, db_now: datetime) -> float:
        """Take one reading; returns the monotonic moment `db_now` was (best estimate)."""
        db = db_now.timestamp()
        lower, upper = asked - db, answered - db
        bounds = self._bounds
        if bounds and lower > bounds[0][1]:
            bounds.clear()  # the database's clock stepped back: earlier readings are wrong
        while bounds and bounds[-1][1] >= upper:
            bounds.pop()  # a later reading with a tighter bound replaces them
        bounds.append((answered, upper))
        while bounds[0][0] < answered - self.window_seconds:
            bounds.popleft()
        return db + bounds[0][1]
