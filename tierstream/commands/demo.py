"""``tierstream demo``: the product on embedded defaults, end to end, in one terminal.

Starts the embedded broker (and a Redis when none answers at REDIS_URL), one worker, and streams a
synthetic population's last two years of events, compressed into ``--duration`` seconds (event time runs
~12 days per wall second; tiers are evaluated in event time, so windows slide as the stream advances).
Tier changes are printed as they arrive; a summary ends the run. Ctrl-C stops everything; every child
process is stopped (SIGKILL after a grace period), so nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ARROWS = {"up": "\u25b2", "down": "\u25bc", "new": "\u25cf"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="run the product on the embedded stack with a synthetic stream")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of streaming (default 60)")
    p.add_argument("--customers", type=int, default=300, help="synthetic customers (default 300)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    p.add_argument("--quiet", action="store_true", help="do not print every tier change")
    p.set_defaults(func=run)


class ChangeWatcher(threading.Thread):
    """Reads the tier-changes topic in the background and prints each change as it arrives."""

    def __init__(self, broker_url: str, topic: str, quiet: bool) -> None:
        super().__init__(daemon=True)
        self.broker_url, self.topic, self.quiet = broker_url, topic, quiet
        self.stop_flag = threading.Event()
        self.directions: Counter[str] = Counter()
        self.latest: dict[tuple[str, str], str] = {}
        self.seen: set[str] = set()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from tierstream.kafka_io import bootstrap

        consumer = KafkaConsumer(bootstrap_servers=bootstrap(self.broker_url), enable_auto_commit=False)
        parts = None
        while parts is None and not self.stop_flag.is_set():
            parts = consumer.partitions_for_topic(self.topic)
            time.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while not self.stop_flag.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                for msg in records:
                    self._show(orjson.loads(msg.value))
        consumer.close()

    def _show(self, change: dict) -> None:
        if change["change_id"] in self.seen:
            return  # at-least-once: a re-delivered change carries the same id
        self.seen.add(change["change_id"])
        self.directions[change["direction"]] += 1
        self.latest[(change["customer_id"], change["policy"])] = change["to"]
        if not self.quiet and change["direction"] != "new":
            score = change.get("score")
            print(
                f"  {ARROWS[change['direction']]} {change['customer_id']:<14} {change['policy']}: "
                f"{change['from']} -> {change['to']}"
                + (f"  (score {score:.1f})" if isinstance(score, int | float) else "")
                + f"  [{change['effective_at'][:10]}]",
                flush=True,
            )


def scrape(port: int) -> dict[str, float]:
    """The worker's tierstream_* counters summed by name and first label value (best effort)."""
    totals: dict[str, float] = {}
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("tierstream_") and not line.startswith("#"):
                name_labels, _, value = line.rpartition(" ")
                totals[name_labels] = float(value)
    return totals


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when it ran to the end (or was interrupted cleanly)."""
    from streams.topics import Topics
    from tierstream.embedded import EmbeddedStack, free_port, start_worker, stop_process, wait_worker_ready
    from tierstream.kafka_io import ensure_topics, producer
    from tierstream.prometheus import maybe_start_for_demo
    from tierstream.synth import generate_events

    interrupted = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
    workdir = Path(tempfile.mkdtemp(prefix="tierstream-demo-"))
    run_id = uuid.uuid4().hex[:6]
    topics = Topics(f"demo{run_id}.")
    stack = EmbeddedStack(log_dir=workdir)
    worker = None
    watcher = None
    prom = None
    try:
        print("tierstream demo: starting the embedded broker ...", flush=True)
        stack.start()
        print(f"  broker {stack.broker_url}   redis {stack.redis_url}   logs {workdir}")
        ensure_topics(stack.broker_url, [*topics.all_consumed(), *topics.all_produced()], 4)
        web_port = free_port()
        env = {
            **stack.env(),
            "TIERSTREAM_TOPIC_PREFIX": topics.prefix,
            "TIERSTREAM_APP_ID": f"tierstream-demo-{run_id}",
            "TIERSTREAM_DATA_DIR": str(workdir / "state"),
            "TIERSTREAM_WEB_PORT": str(web_port),
            "TIERSTREAM_REDIS_PREFIX": f"demo:{run_id}:",
        }
        started = time.monotonic()
        worker = start_worker(env, workdir / "worker.log")
        ready = wait_worker_ready(web_port, 90, worker)
        print(f"  worker ready in {time.monotonic() - started:.1f}s (group joined {ready:.1f}s after start)")
        # the worker's /metrics, and a Prometheus scraping the demo (with the alert rules) when one is installed
        prom, prom_message = maybe_start_for_demo(web_port, None, workdir / "prometheus")
        print(f"  {prom_message}", flush=True)
        watcher = ChangeWatcher(stack.broker_url, topics.tier_changes, args.quiet)
        watcher.start()

        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        events = generate_events(args.customers, args.seed, start=end - timedelta(days=730), end=end)
        print(f"streaming {len(events)} events of {args.customers} customers over {args.duration:.0f}s "
              "(two years of event time) ...", flush=True)
        prod = producer(stack.broker_url)
        t0 = producing_since = time.monotonic()
        sent = 0
        for i, event in enumerate(events):
            if interrupted.is_set():
                break
            if i and i % BACKPRESSURE_EVERY == 0:
                t0 += wait_for_worker(web_port, sent, interrupted)
            due = t0 + args.duration * 0.85 * i / max(1, len(events))
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            raw = event if isinstance(event, bytes) else orjson.dumps(event)
            kind = event.get("type") if isinstance(event, dict) else None
            topic = topics.input(kind) if kind in topics.inputs else topics.input("order")
            key = str(event.get("customer_id", "")).encode() if isinstance(event, dict) else None
            prod.send(topic, key=key, value=raw)
            sent += 1
        prod.flush()
        produce_seconds = time.monotonic() - producing_since
        # let the worker drain what is in flight
        drain_deadline = time.monotonic() + max(5.0, args.duration * 0.15)
        while time.monotonic() < drain_deadline and not interrupted.is_set():
            m = scrape(web_port)
            done = sum(v for k, v in m.items() if k.startswith("tierstream_events_consumed_total"))
            if done >= sent:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        summary(scrape(web_port), watcher, sent, produce_seconds)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping ...", file=sys.stderr)
        return 0
    finally:
        if watcher is not None:
            watcher.stop_flag.set()
            watcher.join(3)
        if prom is not None:
            stop_process(prom)
        if worker is not None:
            stop_process(worker, grace=8)
        stack.stop()


#: The producer checks the worker's progress every this many events ...
BACKPRESSURE_EVERY = 500
#: ... and waits while the worker is more than this many events behind. The demo squeezes two years of
#: event time into a minute, so a backlog of a few seconds is weeks of event time, and the five input
#: topics drain at different speeds under a backlog: logins would arrive months behind the customer's
#: orders and be dead-lettered as too late. On a real stream event time moves with wall time.
MAX_BACKLOG = 2000


def wait_for_worker(web_port: int, sent: int, interrupted: threading.Event) -> float:
    """Block while the worker is more than :data:`MAX_BACKLOG` events behind ``sent``; returns the
    seconds waited (the caller shifts its pacing by them)."""
    started = time.monotonic()
    while not interrupted.is_set():
        done = sum(v for k, v in scrape(web_port).items() if k.startswith("tierstream_events_consumed_total"))
        if sent - done <= MAX_BACKLOG:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def summary(m: dict[str, float], watcher: ChangeWatcher, sent: int, seconds: float) -> None:
    """Print the end-of-run summary."""

    def total(prefix: str) -> float:
        return sum(v for k, v in m.items() if k.startswith(prefix))

    consumed = total("tierstream_events_consumed_total")
    dead = total("tierstream_dead_letters_total")
    dups = total("tierstream_duplicate_events_total")
    per_tier: Counter[tuple[str, str]] = Counter((p, t) for (_, p), t in watcher.latest.items())
    print("\n== summary ==")
    print(f"  events produced     {sent}  ({sent / max(seconds, 1e-9):.0f}/s)")
    print(f"  events processed    {consumed:.0f}  (duplicates ignored {dups:.0f})")
    print(f"  dead-lettered       {dead:.0f}")
    for key, n in sorted(m.items()):
        if key.startswith("tierstream_dead_letters_total{") and n:
            reason = key.partition('reason="')[2].partition('"')[0]
            print(f"    {reason:<18}{n:.0f}")
    print(f"  upgrades            {watcher.directions['up']}")
    print(f"  downgrades          {watcher.directions['down']}")
    print(f"  first assignments   {watcher.directions['new']}")
    print("  customers per tier:")
    for (policy, tier), n in sorted(per_tier.items()):
        print(f"    {policy:<12} {tier:<12} {n}")
    # which hot path the worker ran (scoring.accel): the source is ~10 % slower, and its log says why
    core = "compiled (make native)" if total("tierstream_compiled_core") else "Python source (see the worker log)"
    print(f"  hot path            {core}")
