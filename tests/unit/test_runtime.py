"""The services' runtime settings (common/runtime.py): garbage collection, CPU priority, event
loop."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from common.runtime import GC_THRESHOLDS, tune_garbage_collection
from dispatch_service.settings import WorkerSettings


def test_start_up_objects_are_frozen_and_young_objects_collected_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collection()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _nice_after(start: int, asked: int) -> int:
    """The nice value a fresh interpreter started at `start` ends at after run_at_nice(asked)."""
    code = (
        "import os; from common.runtime import run_at_nice;"
        f" run_at_nice({asked}); print(os.getpriority(os.PRIO_PROCESS, 0))"
    )
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    out = subprocess.run(
        ["nice", "-n", str(start - ours), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_the_send_worker_lowers_its_priority_and_never_raises_it() -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert _nice_after(ours, max(ours, 10)) == max(ours, 10)
    assert _nice_after(max(ours, 15), 10) == max(ours, 15)  # started nicer: stays so


def _loop_class(kind: str) -> str:
    """The class of the loop asyncio.run gives a fresh interpreter after use_event_loop(kind)."""
    code = (
        "import asyncio; from common.runtime import use_event_loop;"
        f" use_event_loop({kind!r});"
        "\nasync def which():\n    loop = asyncio.get_running_loop()"
        "\n    return type(loop).__module__ + '.' + type(loop).__name__"
        "\nprint(asyncio.run(which()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_services_run_on_uvloop_unless_told_asyncio() -> None:
    assert WorkerSettings.model_fields["event_loop"].default == "uvloop"
    assert _loop_class("uvloop") == "uvloop.Loop"
    assert _loop_class("asyncio").startswith("asyncio.")


def test_an_unknown_event_loop_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        WorkerSettings(database_url="postgresql://x@127.0.0.1/db")
