"""Process-wide runtime settings every service applies at start (and the send worker's CPU
priority, `run_at_nice`).

Event loop: the services run on uvloop's (libuv) unless EVENT_LOOP=asyncio. Its sockets,
timers and callbacks cost less CPU than asyncio's pure-Python selector loop, and every process
here spends most of its time in them: one provider call or one webhook per message. Measured
on the 2-core machine, A/B in the same hour: the send worker spent 346-364 µs of CPU per
message sent instead of 382-388 (three senders at 1,000/s, 200 ms provider latency, one worker
process: 1,877-1,981 msg/s instead of 1,806-1,829); the ingestor 115 µs per event instead of
122-123 and the dispatch service 60-65 instead of 67 (50 statuses per POST, saturated).

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

import asyncio
import gc
import os
from typing import Literal

EventLoop = Literal["uvloop", "asyncio"]

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


def use_event_loop(kind: EventLoop) -> None:
    """Create this process's event loops with `kind` from now on (see the module docstring)."""
    if kind == "uvloop":
        import uvloop  # only where chosen: asyncio needs nothing

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
