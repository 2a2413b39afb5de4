"""Process-wide runtime settings every service applies at start (and the send worker's CPU
priority, `run_at_nice`).

Garbage collection: CPython's cycle collector runs its youngest generation every 700 net
container allocations and, now and then, a full collection that walks every object the
process holds. An asyncio service allocates a few tasks, futures and dicts per message, so at
1,000 messages/s it collected many times a second and stalled its event loop for milliseconds
each time, now and then for tens: a send worker's sends then started past their slot's window
and were released unsent (their slots lost), and reads answered late. After start-up, every
object that exists (modules, settings, the code's own tables) is moved out of the collector's
sight (gc.freeze), and the youngest generation is collected every 50,000 allocations (each
collection still only a few milliseconds; most objects are freed by reference counting anyway).
Measured (bench/dispatch.py, one sender at 900/s with 200 ms provider latency): the send rate
from first send to last went from 98.5% to 100.3% of the schedule's.
"""

from __future__ import annotations

import gc
import os

GC_THRESHOLDS = (50_000, 20, 100)
"""Youngest generation every 50,000 net allocations; the older ones after 20 and 100 of the
generation below (CPython's defaults: 700, 10, 10)."""


def tune_garbage_collection() -> None:
    """Freeze what start-up created and collect less often (see the module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_at_nice(nice: int) -> None:
    """Run this process at nice value `nice` at least: lower its CPU priority to it, and leave
    a process that was started nicer still (raising it back needs privileges)."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
