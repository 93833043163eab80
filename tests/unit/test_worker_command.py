"""tierstream.commands.worker: the worker process's garbage-collector tuning."""

from __future__ import annotations

import gc

from tierstream.commands.worker import GC_THRESHOLDS, tune_gc


def test_tune_gc_sets_the_thresholds_and_freezes_what_is_alive() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # the objects alive now are out of the collector's reach
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
