"""``tierstream worker``: run one stream worker (configuration from TIERSTREAM_* variables)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``worker`` subcommand."""
    p = sub.add_parser("worker", help="run a stream worker (consume events, score, emit tier changes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the topology and run it until SIGTERM/SIGINT; returns the exit code."""
    import faust

    from streams.topology import build_worker
    from tierstream import logs
    from tierstream.settings import get_settings

    settings = get_settings()
    logs.configure(settings.log_level)
    tune_process()
    app, _ = build_worker(settings)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


#: Allocations (container objects) between young-generation collections; then 20 young collections per
#: middle one and 100 middle ones per full one. CPython's default is (700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Make the cyclic garbage collector run less often in the worker process.

    The worker allocates many short-lived containers per event (parsed events, feature views, records,
    outputs), and with the default thresholds the collector kept re-scanning the process's long-lived
    objects (modules, Faust's app, caches). ``gc.freeze()`` moves everything alive at start-up out of the
    collector's reach; the higher thresholds make collections rarer. Measured with
    ``bench/bench_throughput.py --customers 50000 --days 10 --skip raw,naive,unbatched,all,latency``, two
    runs each: 4,316 / 4,561 events/s with the defaults, 5,330 / 5,438 with this (0.221 / 0.207 -> 0.178 /
    0.174 CPU s per 1,000 events); peak RSS 654 / 691 MB vs 676 / 616 MB. Reference cycles are still
    collected, only later."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_process() -> None:
    """The worker's collector and allocator settings (:func:`tune_gc`, :func:`tune_malloc`), measured for its
    work: applied by the worker's process and by each of its decision processes (streams.decision_process)."""
    tune_gc()
    tune_malloc()


#: glibc ``mallopt`` parameters (malloc.h) and the values tune_malloc sets: blocks up to 32 MiB come from the
#: heap (glibc's own ceiling for its sliding threshold), and up to 256 MiB of free heap is kept for reuse.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
#: the environment through which glibc is configured at start-up: when one is set, its configuration stands
_MALLOC_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def tune_malloc() -> bool:
    """Keep the worker's multi-megabyte buffers in the C heap between batches instead of mapping fresh pages.

    Each backlog batch pickles parts and outcomes of several MB (streams.decision_process: ``BytesIO``
    buffers that grow by doubling), and the Kafka and Redis clients build buffers as large. glibc serves
    such blocks with ``mmap`` and returns them to the system when freed (or trims the heap top past twice
    its sliding threshold), so the next batch faults every page in again, each one zeroed by the kernel.
    Measured during a one-policy drain of 50,000 customers (session 21; ``/proc/PID/stat`` over 10 s): 7,084
    minor faults/s in the worker's own process and 2,441-3,843 in each decision process; ``perf`` put the
    kernel's page clearing at ~6 % of a decision process's CPU (more in a VM, where a first touch may also
    exit to the hypervisor). With these settings: 3,502 and 278-445 faults/s.

    Returns whether the settings were applied: not when the C library is not glibc (no ``mallopt``), or
    when the environment already sets glibc's thresholds (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES``), which then stand. Costs up to
    ``TRIM_THRESHOLD_BYTES`` of free heap kept mapped: RSS stays near its peak."""
    import ctypes
    import ctypes.util
    import os

    if any(name in os.environ for name in _MALLOC_ENVIRONMENT):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
