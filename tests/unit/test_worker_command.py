"""tierstream.commands.worker: the worker process's garbage-collector and allocator tuning."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys

import pytest

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


# A child process that pickles ~10 MB as the process pool does (multiprocessing's pickler into a growing
# BytesIO), and copies it as the receiving side does, 20 times (each backlog batch does that with its parts
# and outcomes); it prints the minor page faults per round. ``tune`` applies tune_malloc first.
_ROUNDS = """
import resource, sys
from multiprocessing.reduction import ForkingPickler
from tierstream.commands.worker import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tune" else None
data = [(i, "customer-%d" % i, b"%300d" % i, 1.5) for i in range(25_000)]  # ~8.4 MB pickled
bytes(ForkingPickler.dumps(data))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blob = ForkingPickler.dumps(data)
    copy = bytes(blob)
    del blob, copy
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20)
"""


def _rounds(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env})
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_malloc_keeps_large_buffers_mapped_between_rounds() -> None:
    """Session 21: without it every round faults the buffers' pages in again (~2,400 pages of 4 KiB here)."""
    applied, tuned = _rounds("tune")
    _, untuned = _rounds("plain")
    assert applied == "True"
    assert untuned > 500  # the behaviour tune_malloc exists for
    assert tuned < 50


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_malloc_leaves_an_allocator_configured_by_the_environment() -> None:
    applied, faults = _rounds("tune", MALLOC_TRIM_THRESHOLD_="0")  # trim at every free: the most faults
    assert applied == "False"
    assert faults > 500
