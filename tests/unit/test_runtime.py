"""The services' garbage-collection settings (common/runtime.py)."""

from __future__ import annotations

import gc

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
