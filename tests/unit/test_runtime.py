"""The services' garbage-collection settings (common/runtime.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

from common.runtime import GC_THRESHOLDS, tune_garbage_collection


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
