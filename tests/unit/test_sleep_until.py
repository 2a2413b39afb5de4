"""The send worker's slot wait (dispatcher.worker.sleep_until) never ends before its moment, on
either event loop the services may run (common/runtime.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from dispatch_service.dispatcher.worker import sleep_until

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


async def _earliest(wait: Callable[[float], Awaitable[None]], rounds: int = 200) -> float:
    """The most any of `rounds` waits of 1-4.7 ms ended before its moment (seconds)."""
    early = 0.0
    for i in range(rounds):
        moment = time.monotonic() + 0.001 + (i % 10) * 0.00037
        await wait(moment)
        early = max(early, moment - time.monotonic())
    return early


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_slot_wait_never_ends_early(loop: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        assert runner.run(_earliest(sleep_until)) <= 0.0


def test_one_plain_sleep_on_uvloop_can_end_early() -> None:
    """Why sleep_until loops: uvloop's timers wake before their moment."""

    async def plain(moment: float) -> None:
        await asyncio.sleep(moment - time.monotonic())

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_earliest(plain)) > 0.0
