"""What a decision process's last step costs: ``streams.encoded.encode_outputs`` over a whole drain's outputs,
with the encoders of now and the pydantic pipelines they replaced (session 19), on the same outputs.

The hot-path load (``bench/bench_hotpath.py``'s: ``generate_events``, seed 8, 60 days, fixed end) is drained in
batches of 1,000 through ``BatchProcessor`` (decisions and decays), keeping each batch's tier changes and
read-model records; then every output is encoded.

- ``--mode timeit`` (default): µs per output of each encoder, old and new passes alternating in one process
  (best of ``--repeat``), and a check that both give the same bytes for every output.
- ``--mode none|old|new``: drain, then encode everything once with no/old/new encoders: for instruction counts,
  run each under callgrind and subtract ``none``'s total from the others' (with a fixed hash seed the drain
  executes alike in each)::

      for m in none old new; do PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=cg_$m.out \\
          .venv/bin/python bench/bench_encode.py --mode $m --scenario all --customers 300; done
      grep ^summary cg_*.out

Run: ``.venv/bin/python bench/bench_encode.py [--scenario one|all] [--customers 1200]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:  # run as a script: the project packages and bench_hotpath
        sys.path.insert(0, str(path))

import bench_hotpath  # noqa: E402

import streams.encoded as encoded  # noqa: E402
from schemas.outputs import TierChangeEvent  # noqa: E402
from schemas.readmodel import TierRecord  # noqa: E402
from scoring.policy import load_policies, preset_names  # noqa: E402
from streams.batch import Outbox, encode_change  # noqa: E402
from tierstream.readmodel import codec  # noqa: E402
from tierstream.readmodel.writer import RecordWrite  # noqa: E402


def old_record_value(record: TierRecord) -> bytes:
    """``codec.encode`` before session 19."""
    return record.model_dump_json(exclude={"customer_id", "policy"}).encode("utf-8")


def old_change_wire(change: TierChangeEvent) -> bytes:
    """``streams.batch.encode_change`` before session 19."""
    return orjson.dumps(change.model_dump(mode="json", by_alias=True))


def old_snapshot_value(record: TierRecord) -> bytes:
    """The snapshot record's value before session 19."""
    return orjson.dumps(record.model_dump(mode="json"))


def drain(scenario: str, customers: int) -> list[tuple[list[TierChangeEvent], list[TierRecord]]]:
    """Each batch's (and decay round's) tier changes and read-model records, in order."""
    records = bench_hotpath.make_records(customers, 8, 60)
    run = bench_hotpath.Run(load_policies(["five_tier"] if scenario == "one" else preset_names()), 1000)
    kept: list[tuple[list[TierChangeEvent], list[TierRecord]]] = []
    run._record = lambda out: kept.append((list(out.tier_changes), list(out.read_model)))  # type: ignore[method-assign]
    run.drain(records)
    return kept


def use_old_encoders() -> None:
    """Put the pre-session-19 encoders where ``encode_outputs`` and ``RecordWrite.of`` look them up."""
    codec.encode = old_record_value  # type: ignore[assignment]
    codec.encode_keyed = old_snapshot_value  # type: ignore[assignment]
    encoded.encode_change = old_change_wire  # type: ignore[assignment]


def per_output(old: Callable[[Any], object], new: Callable[[Any], object], items: Sequence[Any], repeat: int
               ) -> tuple[float, float]:
    """Best µs per item of ``old`` and of ``new`` over ``items``, their passes alternating (this machine's speed
    drifts within seconds: passes of one, then of the other, compared different speeds)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((old, new)):
            started = time.process_time()
            for item in items:
                fn(item)
            best[i] = min(best[i], time.process_time() - started)
    return best[0] / len(items) * 1e6, best[1] / len(items) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("timeit", "none", "old", "new"), default="timeit")
    ap.add_argument("--scenario", choices=("one", "all"), default="all")
    ap.add_argument("--customers", type=int, default=1200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    kept = drain(args.scenario, args.customers)
    changes = [c for batch, _ in kept for c in batch]
    records = [r for _, batch in kept for r in batch]
    print(f"{args.scenario}: {args.customers:,} customers, {len(kept)} batches, {len(changes):,} tier changes, "
          f"{len(records):,} read-model records", flush=True)
    if args.mode == "old":
        use_old_encoders()
    if args.mode in ("old", "new"):
        for batch_changes, batch_records in kept:
            out = Outbox()
            out.tier_changes, out.read_model = batch_changes, batch_records
            encoded.encode_outputs(out)
        return
    if args.mode == "none":
        return
    assert all(old_record_value(r) == codec.encode(r) for r in records)
    assert all(old_change_wire(c) == encode_change(c) for c in changes)
    assert all(old_snapshot_value(r) == codec.encode_keyed(r) for r in records)
    print("same bytes, old and new, for every output")
    pairs = [("read-model value", old_record_value, codec.encode, records),
             ("RecordWrite.of (value and key)", lambda r: RecordWrite(r.customer_id, r.policy, r.version, r.tier,
                                                                      old_record_value(r)), RecordWrite.of, records),
             ("tier change wire", old_change_wire, encode_change, changes),
             ("snapshot value", old_snapshot_value, codec.encode_keyed, records)]
    for label, old, new, items in pairs:
        before, after = per_output(old, new, items, args.repeat)
        print(f"  {label:32} {before:6.2f} -> {after:6.2f} µs each  ({before / after:.2f} x)", flush=True)


if __name__ == "__main__":
    main()
