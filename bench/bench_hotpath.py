"""The worker's CPU hot path without a broker: ``BatchProcessor.process`` / ``decay`` over a dict store.

What it measures: the per-event and per-touched-customer Python work of the stream worker (validation,
dedup, fold, features, every policy's evaluation and lifecycle step, next-due computation, state decode and
encode), driven exactly as ``streams.worker.Worker`` drives it: batches of ``--batch`` records in arrival
order, each followed by the decay rounds of the customers due up to each partition's event-time
watermark (``Worker._run_due``: up to 50 rounds of 2,000, decided in memory, then stored). No Faust, Kafka,
Redis or metrics: those costs are in ``bench/bench_throughput.py``.

Load: ``tierstream.synth.generate_events`` with the throughput harness's defaults of sessions 1-8 (1,200
customers, seed 8, 60 days of event time), but with a *fixed* end time (2026-01-01) so two runs see the same
events and the digests below are comparable across code versions.

Output, per scenario (``one``: five_tier; ``all``: the eleven presets): events/s (wall), CPU seconds per
1,000 events (``time.process_time``; best of ``--repeat`` runs; the harness's own digest work is measured and
subtracted from both), decays run and stored, tier changes, and
three digests: ``outputs`` (every tier change, notice, audit record and dead letter, in order), ``decisions``
(the same and every read-model record) and ``states`` (every final stored state, with the next-due
bookkeeping and the elision keys blanked: a schedule and a cache, not decisions). Equal digests before and
after a change = identical decisions and state. Since session 19 also the CPU of encoding each batch's outputs
as a decision process does (``streams.encoded.encode_outputs``), apart from the figure above (which stays
comparable with earlier sessions), and the ``encoded`` digest of those bytes (what reaches Kafka and Redis).
Since session 5 a policy decision whose inputs did not
change is elided (``streams.decide``); all three digests are those of the code before (session 4's).

The process runs with the worker's garbage-collector settings (``--gc worker``, since session 6; figures of
earlier sessions are with CPython's defaults, ``--gc default``).

Run: ``.venv/bin/python bench/bench_hotpath.py [--scenarios one,all] [--repeat 3] [--profile FILE]``.
``--profile`` writes a cProfile of the last run of the first scenario (read with ``pstats``).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project packages importable
    sys.path.insert(0, str(ROOT))

from scoring import accel  # noqa: E402
from scoring.policy import load_policies, preset_names  # noqa: E402
from scoring.state import MAX_RETENTION_DAYS, CustomerState  # noqa: E402
from scoring.timers import continuous_thresholds  # noqa: E402
from streams.batch import BOOKKEEPING, BatchProcessor, InRecord, Outbox  # noqa: E402
from streams.due import DueIndex  # noqa: E402
from streams.encoded import encode_outputs  # noqa: E402
from streams.partitioning import partition_for  # noqa: E402
from streams.topics import Topics  # noqa: E402
from tierstream.commands.worker import tune_gc  # noqa: E402
from tierstream.synth import generate_events  # noqa: E402

END = datetime(2026, 1, 1, tzinfo=UTC)
NOW = END + timedelta(hours=1)  # wall clock of validation and decided_at: fixed, so outputs are comparable
PARTITIONS = 4
TOPICS = Topics("bench.")


def make_records(customers: int, seed: int, days: int) -> list[InRecord]:
    """The load as consumed records: keyed by customer id on its murmur2 partition, offsets per partition."""
    events = generate_events(customers, seed=seed, start=END - timedelta(days=days), end=END)
    offsets = [0] * PARTITIONS
    out = []
    for e in events:
        key = e["customer_id"].encode()
        p = partition_for(key, PARTITIONS)
        out.append(InRecord(TOPICS.input(e["type"]), p, offsets[p], key, orjson.dumps(e), NOW.timestamp()))
        offsets[p] += 1
    return out


class Run:
    """One drain of the load through a fresh processor and store (the worker's order of work)."""

    def __init__(self, policies: list[Any], batch: int, rewrite: bool = True) -> None:
        days = min(max(p.max_window_days for p in policies), MAX_RETENTION_DAYS)
        self.processor = BatchProcessor(
            policies, TOPICS, PARTITIONS, max_future_skew=timedelta(minutes=5), horizon=timedelta(days=days),
            thresholds=continuous_thresholds(p.source for p in policies), rewrite_elided=rewrite)
        self.batch = batch
        self.store: dict[str, bytes] = {}
        self.due = DueIndex()
        self.watermarks: dict[int, datetime] = {}
        self.decays = self.decays_stored = self.changes = self.read_records = self.elided = 0
        self.overhead = 0.0  # CPU seconds of the harness's own digest work (subtracted)
        self.encode_cpu = 0.0  # CPU seconds of encode_outputs (the decision process's last step), apart
        self.encode_wall = 0.0  # and its wall seconds (events/s stays the processing's, as before session 19)
        self.encoded = hashlib.blake2b(digest_size=16)  # every encoded output's bytes, in order
        self.digest = hashlib.blake2b(digest_size=16)
        self.outputs = hashlib.blake2b(digest_size=16)  # the decisions digest without read-model records

    def load(self, customer_id: str, partition: int) -> bytes | None:
        return self.store.get(customer_id)

    def _schedule(self, out: Outbox) -> None:
        for partition, mark in out.watermarks.items():
            if partition not in self.watermarks or mark > self.watermarks[partition]:
                self.watermarks[partition] = mark
        for customer_id, (partition, due) in out.due.items():
            self.due.schedule(partition, customer_id, due)

    def _record(self, out: Outbox) -> None:
        """Fold every decision output into the digest (in order). Its CPU time is the harness's, not the
        worker's (serializing every read-model record costs as much as a third of the scoring): it is
        measured and subtracted. Then encode the outputs as a decision process does before returning them
        (``streams.encoded.encode_outputs``: tier changes, Redis values, snapshot records), timed apart
        (``encode_cpu``), and fold the bytes into the ``encoded`` digest (harness time again)."""
        started = time.process_time()
        self._digest(out)
        encoding, encoding_wall = time.process_time(), time.perf_counter()
        encoded = encode_outputs(out)
        encoded_at = time.process_time()
        self.encode_wall += time.perf_counter() - encoding_wall
        self.encode_cpu += encoded_at - encoding
        update = self.encoded.update
        for change in encoded.changes:
            update(change.wire)
            update(change.ledger.member)
        for write in encoded.records:
            update(write.value)
        for key, value in encoded.snapshots:
            update(key)
            update(value)
        self.overhead += time.process_time() - encoded_at + encoding - started

    def _digest(self, out: Outbox) -> None:
        self.changes += len(out.tier_changes)
        self.read_records += len(out.read_model)
        self.elided += sum(out.elided.values())
        update = self.digest.update

        def both(data: bytes) -> None:  # outputs are in both digests, read-model records in decisions only
            update(data)
            self.outputs.update(data)

        for c in out.tier_changes:
            both(orjson.dumps(c.model_dump(mode="json", by_alias=True)))
        for n in out.notices:
            both(orjson.dumps(n.model_dump(mode="json")))
        for a in out.audit:
            both(orjson.dumps(a.model_dump(mode="json")))
        for r in out.read_model:
            update(orjson.dumps(r.model_dump(mode="json")))
        for d in out.dead_letters:
            both(f"{d.reason}|{d.record.offset}".encode())

    def _run_due(self, limit: int = 2000, rounds: int = 50) -> None:
        decided: dict[str, tuple[int, bytes]] = {}

        def load(customer_id: str, partition: int) -> bytes | None:
            hit = decided.get(customer_id)
            return hit[1] if hit is not None else self.store.get(customer_id)

        for _ in range(rounds):
            due = [(c, p, at) for p, mark in list(self.watermarks.items())
                   for c, at in self.due.pop_due(p, mark, limit)]
            if not due:
                break
            self.decays += len(due)
            out = self.processor.decay(due, load, NOW)
            self.decays_stored += len(out.state_writes)
            decided.update(out.state_writes)
            self._schedule(out)
            self._record(out)
        for customer_id, (_, data) in decided.items():
            self.store[customer_id] = data

    def drain(self, records: list[InRecord]) -> None:
        for i in range(0, len(records), self.batch):
            out = self.processor.process(records[i : i + self.batch], self.load, NOW)
            for customer_id, (_, data) in out.state_writes.items():
                self.store[customer_id] = data
            self._schedule(out)
            self._record(out)
            self._run_due()

    def state_digest(self) -> str:
        """Digest of every stored state with the next-due bookkeeping blanked (a schedule, not a decision)."""
        h = hashlib.blake2b(digest_size=16)
        for customer_id in sorted(self.store):
            state = CustomerState.from_bytes(self.store[customer_id])
            book = state.tiers.get(BOOKKEEPING)
            if book is not None:
                book["due"] = None
            for record in state.tiers.values():
                record.pop("fk", None)  # the elision key (streams.decide): a cache of the decision's inputs
            h.update(state.to_bytes())
        return h.hexdigest()


def scenario(name: str, specs: list[str], records: list[InRecord], args: argparse.Namespace) -> dict[str, Any]:
    policies = load_policies(specs)
    best: dict[str, Any] | None = None
    for i in range(args.repeat):
        run = Run(policies, args.batch, args.rewrite_unchanged == "true")
        profiler = cProfile.Profile() if args.profile and i == args.repeat - 1 and name == args.first else None
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        run.drain(records)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        # the digest's CPU time is taken off both: what remains is the worker's processing
        wall = time.perf_counter() - wall0 - run.overhead - run.encode_wall
        cpu = time.process_time() - cpu0 - run.overhead - run.encode_cpu
        result = {
            "events": len(records), "seconds": round(wall, 3), "events_per_second": round(len(records) / wall),
            "cpu_seconds_per_1000": round(cpu / len(records) * 1000, 4), "decays": run.decays,
            "decays_stored": run.decays_stored, "tier_changes": run.changes, "decisions": run.digest.hexdigest(),
            "outputs": run.outputs.hexdigest(), "read_model_records": run.read_records, "elided": run.elided,
            "encode_cpu_seconds_per_1000": round(run.encode_cpu / len(records) * 1000, 4),
            "encoded": run.encoded.hexdigest(),
        }
        if best is None or result["cpu_seconds_per_1000"] < best["cpu_seconds_per_1000"]:
            best = result
        last = run
    assert best is not None
    best["states"] = last.state_digest()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--batch", type=int, default=1000,
                    help="records per batch (1000 keeps digests comparable with earlier runs; the worker's "
                         "TIERSTREAM_BATCH_MAX is 40000, reached when it is behind)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario; the lowest CPU time counts")
    ap.add_argument("--scenarios", default="one,all")
    ap.add_argument("--rewrite-unchanged", choices=("true", "false"), default="true",
                    help="TIERSTREAM_READ_MODEL_REWRITE_UNCHANGED: false leaves elided decisions' read-model "
                         "records out (the decisions digest and record count then differ; outputs and states not)")
    ap.add_argument("--profile", type=Path, default=None, help="cProfile output of the first scenario's last run")
    ap.add_argument("--gc", choices=("worker", "default"), default="worker",
                    help="worker: the worker's collector settings (tierstream.commands.worker.tune_gc, applied "
                         "once the load is built, as the worker applies them at start); default: CPython's")
    args = ap.parse_args()
    records = make_records(args.customers, args.seed, args.days)
    if args.gc == "worker":
        tune_gc()
    chosen = [s for s in args.scenarios.split(",") if s]
    args.first = chosen[0] if chosen else ""
    specs = {"one": ["five_tier"], "all": preset_names()}
    print(f"load: {len(records):,} events, {args.customers:,} customers, {args.days} days, batch {args.batch}")
    core = accel.status()
    print("core: " + ("compiled (.native)" if core.compiled else f"Python source ({core.reason})"), flush=True)
    results = {}
    for name in chosen:
        r = results[name] = scenario(name, specs[name], records, args)
        print(f"{name:>4}: {r['events_per_second']:>7,} events/s  {r['cpu_seconds_per_1000']:.4f} CPU s/1k events  "
              f"decays {r['decays']:,} (stored {r['decays_stored']:,})  tier changes {r['tier_changes']:,}  "
              f"read-model records {r['read_model_records']:,}  elided policy decisions {r['elided']:,}", flush=True)
        print(f"      outputs {r['outputs']}  states {r['states']}  decisions {r['decisions']}", flush=True)
        print(f"      encode {r['encode_cpu_seconds_per_1000']:.4f} CPU s/1k events (not in the figure above)  "
              f"encoded {r['encoded']}", flush=True)
    if "one" in results and "all" in results:
        print(f"all / one: {results['all']['events_per_second'] / results['one']['events_per_second']:.3f}")


if __name__ == "__main__":
    main()
