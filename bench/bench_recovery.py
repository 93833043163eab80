"""Recovery benchmark: time for a worker with an empty state directory to restore N customers of state.

Builds N realistic customer states (a small synthetic population folded with the stream's own state
code, each state re-keyed to a new customer id), writes them to the worker's state changelog exactly as a
worker would (key = customer id, partition = murmur2 of the key, one record per producer batch as the
embedded broker needs), then starts a worker on an empty state directory and measures:

- ``ready_seconds``: process start to ready (Faust signals rebalance complete after table recovery);
- ``recounted_seconds``: process start until its gauges report all N customers (recovery + recount);
- bytes of state per customer (mean, p50, p99) and the changelog size.

Writes ``bench/results/recovery.json``. Run: ``.venv/bin/python bench/bench_recovery.py [--customers N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from kafka import KafkaProducer

from schemas.events import parse_event
from scoring.replay import fold_states
from streams.partitioning import partition_for
from tierstream.embedded import EmbeddedStack, free_port, start_worker, stop_process, wait_worker_ready
from tierstream.kafka_io import bootstrap, ensure_topics

PARTITIONS = 4


def template_states(customers: int, seed: int) -> list[bytes]:
    """Serialized states of a folded synthetic population (the shapes real customers have)."""
    from tierstream.synth import generate_events

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    now = datetime.now(UTC)
    events = [parse_event(orjson.dumps(e), now, timedelta(minutes=5))
              for e in generate_events(customers, seed, start=end - timedelta(days=365), end=end)]
    return [s.to_bytes() for s in fold_states(events, timedelta(days=1100)).values()]


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rpartition(" ")[2])
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--templates", type=int, default=400, help="synthetic customers the states are copied from")
    ap.add_argument("--out", default="bench/results/recovery.json")
    args = ap.parse_args()

    from scoring.state import CustomerState

    templates = template_states(args.templates, seed=5)
    print(f"{len(templates)} template states built", flush=True)
    app_id = "bench-recovery"
    changelog = f"{app_id}-customer-state-changelog"
    sizes: list[int] = []
    with EmbeddedStack() as stack:
        ensure_topics(stack.broker_url, [changelog], PARTITIONS)
        # batch_size=1: every record its own batch, as the worker writes on the embedded broker
        prod = KafkaProducer(bootstrap_servers=bootstrap(stack.broker_url), acks="all", batch_size=1, linger_ms=0)
        started = time.monotonic()
        for i in range(args.customers):
            state = CustomerState.from_bytes(templates[i % len(templates)])
            state.customer_id = f"r{i:07d}"
            data = state.to_bytes()
            sizes.append(len(data))
            key = state.customer_id.encode()
            prod.send(changelog, key=key, value=data, partition=partition_for(key, PARTITIONS))
            if i % 20_000 == 0:
                print(f"  written {i:,}/{args.customers:,}", flush=True)
        prod.flush()
        print(f"changelog of {args.customers:,} states ({sum(sizes) / 1e6:.1f} MB) written in "
              f"{time.monotonic() - started:.1f}s", flush=True)

        work = Path(tempfile.mkdtemp(prefix="tierstream-recovery-"))
        port = free_port()
        env = {**stack.env(), "TIERSTREAM_APP_ID": app_id, "TIERSTREAM_TOPIC_PREFIX": "bench-recovery.",
               "TIERSTREAM_DATA_DIR": str(work / "state"), "TIERSTREAM_WEB_PORT": str(port),
               "TIERSTREAM_REDIS_PREFIX": "bench:recovery:"}
        ensure_topics(stack.broker_url, [f"bench-recovery.events.{t}" for t in
                                         ("order", "payment", "login", "ticket", "profile", "repartition")]
                      + ["bench-recovery.admin-commands"], PARTITIONS)
        t0 = time.monotonic()
        worker = start_worker(env, work / "worker.log")
        try:
            ready = wait_worker_ready(port, 900, worker)
            ready_seconds = time.monotonic() - t0
            while metric(port, "tierstream_state_customers") < args.customers:
                if time.monotonic() - t0 > 1200:
                    raise TimeoutError("recount did not reach every customer")
                time.sleep(0.5)
            recounted_seconds = time.monotonic() - t0
        finally:
            stop_process(worker, grace=8)
    result = {
        "customers": args.customers,
        "changelog_bytes": sum(sizes),
        "state_bytes_mean": statistics.fmean(sizes),
        "state_bytes_p50": statistics.median(sizes),
        "state_bytes_p99": sorted(sizes)[int(0.99 * (len(sizes) - 1))],
        "ready_seconds": ready_seconds,
        "group_join_to_ready_seconds": ready,
        "recounted_seconds": recounted_seconds,
        "restore_mb_per_second": sum(sizes) / 1e6 / ready_seconds,
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
