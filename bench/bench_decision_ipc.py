"""What a batch costs to send to a decision process and back (streams/decision_process.py), against deciding it.

Decides one backlog-sized batch in process (after a first batch, so that the second reads stored states),
then pickles what would cross the pipe and times ``pickle.dumps`` and ``pickle.loads`` of each part: the
records (as the tuples that cross), the stored states, and the outbox field by field. The child pays the
outbox's dump, the worker's own process its load (and the records' and states' dump).

Load: ``bench_hotpath.make_records`` (4,800 customers, seed 8, 60 days of event time; the throughput
harness's load). Run: ``.venv/bin/python bench/bench_decision_ipc.py [--policies one|all] [--batch 40000]``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:  # run as a script: the project packages and the hot-path bench's load
        sys.path.insert(0, str(path))

from bench_hotpath import NOW, make_records  # noqa: E402

from scoring import accel  # noqa: E402
from scoring.policy import preset_names  # noqa: E402
from streams.batch import InRecord, Outbox  # noqa: E402
from streams.decision_process import build_processor, loader, split  # noqa: E402
from tierstream.settings import Settings  # noqa: E402


def timed(obj: object) -> tuple[float, float, float]:
    """(MB, dump ms, load ms) of ``obj`` pickled with protocol 5 (what multiprocessing uses)."""
    start = time.perf_counter()
    data = pickle.dumps(obj, protocol=5)
    dumped = time.perf_counter()
    pickle.loads(data)
    return len(data) / 1e6, (dumped - start) * 1000, (time.perf_counter() - dumped) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policies", choices=("one", "all"), default="one", help="five_tier, or the eleven presets")
    ap.add_argument("--customers", type=int, default=4800)
    ap.add_argument("--batch", type=int, default=40000, help="records of the measured batch (and of the first)")
    args = ap.parse_args()
    policies = ("five_tier",) if args.policies == "one" else tuple(preset_names())
    processor = build_processor(Settings(policies=policies))
    records = make_records(args.customers, 8, 60)
    store: dict[str, bytes] = {}

    def decide(batch: list[InRecord]) -> tuple[dict[tuple[str, int], bytes | None], Outbox, float]:
        states = {(r.key.decode(), r.partition): store.get(r.key.decode()) for r in batch if r.key}
        start = time.process_time()
        out = processor.process(batch, loader(states), NOW)
        cpu = time.process_time() - start
        store.update({c: w[1] for c, w in out.state_writes.items()})
        return states, out, cpu

    decide(records[: args.batch])
    batch = records[args.batch: 2 * args.batch]
    states, out, cpu = decide(batch)
    # Dead letters cross as tuples (streams.decision_process._unpack): the compiled InRecord cannot be unpickled.
    dead = [(split([d.record], 1)[0][0][0], d.reason, d.detail) for d in out.dead_letters]
    out.dead_letters = []
    core = accel.status()
    print(f"core: {'compiled (.native)' if core.compiled else 'Python source (' + core.reason + ')'}; "
          f"policies: {args.policies}; {len(batch):,} records, {len(states):,} customers; "
          f"deciding: {cpu:.2f} s CPU")
    print(f"{'part':<20} {'items':>8} {'MB':>7} {'dump ms':>8} {'load ms':>8}")
    rows = [("records", len(batch), split(batch, 1)[0][0]), ("states", len(states), states), ("outbox", "", out),
            ("  dead letters", len(dead), dead)]
    rows += [(f"  {f.name}", len(getattr(out, f.name)), getattr(out, f.name)) for f in fields(out)]
    for name, items, obj in rows:
        if items == 0:
            continue
        mb, dump, load = timed(obj)
        print(f"{name:<20} {items!s:>8} {mb:>7.2f} {dump:>8.1f} {load:>8.1f}")


if __name__ == "__main__":
    main()
