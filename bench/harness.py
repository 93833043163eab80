"""Small helpers of the stream benchmarks: process accounting from /proc, metric scraping, progress lines,
producing a pre-encoded load, and reading a topic with record timestamps.

Kept apart from ``bench_throughput`` so other benchmarks (and the capacity notes) can reuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from tierstream.kafka_io import bootstrap, producer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Record:
    """One event of the load, encoded once: input topic suffix (event type), key and value bytes."""

    kind: str
    key: bytes
    value: bytes
    event_id: str


def encode_load(events: Iterable[dict]) -> list[Record]:
    """Encode the generated events once, so every scenario sends the same bytes."""
    return [Record(e["type"], e["customer_id"].encode(), orjson.dumps(e), e["event_id"]) for e in events]


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a worker's decision processes: streams.decision_process)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(parents.get(found[-1], ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and its live descendants (utime + stime from
    /proc/PID/stat): a worker's CPU includes its decision processes'."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):  # a descendant that has just exited
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def peak_rss(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process plus those of its live descendants, in bytes (a
    sum of peaks: at most what they held at once)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total


def loadavg() -> list[float]:
    """The machine's 1/5/15-minute load averages (others' test runs share these 2 cores)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def git_commit(repo: Path) -> str:
    """HEAD's hash, with ``+dirty`` when the work tree has changes (results must name what they measured)."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def metrics_page(port: int) -> str:
    """The text of a worker's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return resp.read().decode()


def metric_sum(page: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) on a Prometheus text page."""
    return sum(float(line.rpartition(" ")[2]) for line in page.splitlines()
               if line.startswith((name + " ", name + "{")))


def consumed(port: int) -> float:
    """Input events a worker has consumed (all types and outcomes)."""
    return metric_sum(metrics_page(port), "tierstream_events_consumed_total")


def progress(port: int) -> tuple[float, float | None]:
    """A worker's (input events consumed, unix time at which the batch that brought that count ended), read
    from one /metrics page: the worker sets both at the end of each batch, so the pair is consistent and
    its time is the worker's own, not the time this poll was answered. None before the first batch."""
    page = metrics_page(port)
    n = metric_sum(page, "tierstream_events_consumed_total")
    return n, (metric_sum(page, "tierstream_last_event_timestamp_seconds") or None) if n else None


def naive_count(port: int) -> dict[str, float]:
    """The naive Faust app's counter page (see bench/naive_faust_app.py)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=2) as resp:
        return orjson.loads(resp.read())


class Progress:
    """A progress line on stderr, redrawn at most twice a second (long phases must show they move)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, done: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.5:
            return
        self._drawn = now
        elapsed = now - self.started
        pct = 100.0 * done / self.total if self.total else 100.0
        sys.stderr.write(f"\r  {self.label}: {int(done):>9,}/{self.total:,} ({pct:5.1f}%) {elapsed:6.1f}s ")
        sys.stderr.flush()

    def done(self, done: float) -> None:
        self.update(done, force=True)
        sys.stderr.write("\n")
        sys.stderr.flush()


def produce_all(broker_url: str, topic_of: dict[str, str], load: Sequence[Record], label: str) -> float:
    """Send the whole load as fast as the producer goes; returns seconds taken (flush included)."""
    prod = producer(broker_url, linger_ms=20, batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    progress = Progress(label, len(load))
    started = time.monotonic()
    try:
        for i, rec in enumerate(load):
            prod.send(topic_of[rec.kind], key=rec.key, value=rec.value)
            if i % 5000 == 0:
                progress.update(i)
        prod.flush()
    finally:
        prod.close()
    progress.done(len(load))
    return time.monotonic() - started


def produce_paced(
    broker_url: str, topic_of: dict[str, str], load: Sequence[Record], rate: float, label: str
) -> dict[str, float]:
    """Send ``load`` at ``rate`` events/s (in 10 ms ticks); returns event_id -> wall time of the first send.

    Each tick appends the records now due to one aiokafka record batch per topic partition (murmur2 of the
    key, as Kafka's default partitioner; :class:`streams.bulk.BulkProducer`) and submits them at once. The
    send time is taken as a record is appended, so the tick's batching (up to 10 ms) counts as latency, as
    a real producer's linger would.

    Why not kafka-python's ``send`` per record: on this 2-core machine it tops out at ~13,800 records/s
    using a whole core (measured alone, session 14), so a latency run at ~21,000/s offered only ~13,500/s
    and took a core from the worker it measured. aiokafka's compiled batch builder costs a few µs a record.
    The rate achieved is what the caller reads from the send times (bench_throughput's latency run does).
    """
    return asyncio.run(_produce_paced(broker_url, topic_of, load, rate, label))


async def _produce_paced(
    broker_url: str, topic_of: dict[str, str], load: Sequence[Record], rate: float, label: str
) -> dict[str, float]:
    from aiokafka import AIOKafkaProducer

    from streams.bulk import BulkProducer, Submitted
    from streams.partitioning import partition_for

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap(broker_url), acks="all", linger_ms=0)
    await prod.start()
    try:
        bulk = BulkProducer(prod)  # the worker's own batch builder: one record batch per partition per tick
        counts = {topic: await bulk.partitions(topic) for topic in set(topic_of.values())}
        # partitions computed before the clock starts: pure-Python murmur2 is not the system under test
        plan = [(topic_of[r.kind], partition_for(r.key, counts[topic_of[r.kind]]), r.key, r.value, r.event_id)
                for r in load]
        sent: dict[str, float] = {}
        submitted: list[Submitted] = []
        progress = Progress(label, len(plan))
        started = time.monotonic()
        i = 0
        while i < len(plan):
            due = min(int((time.monotonic() - started) * rate) + 1, len(plan))
            while i < due:
                topic, partition, key, value, event_id = plan[i]
                bulk.add(topic, partition, key, value)
                sent.setdefault(event_id, time.time())
                i += 1
            submitted.append(await bulk.submit())
            progress.update(i)
            await asyncio.sleep(0.01)
        for batches in submitted:
            await batches.wait()
    finally:
        await prod.stop()
    progress.done(len(plan))
    return sent


def read_with_timestamps(broker_url: str, topic: str, idle: float = 2.0) -> list[tuple[int, bytes]]:
    """Every record of ``topic`` from the beginning as (record timestamp ms, value), no consumer group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[tuple[int, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker_url), enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        out: list[tuple[int, bytes]] = []
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()  # first use of the topic by this client
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            last = time.monotonic()
            while time.monotonic() - last < idle:
                batch = await consumer.getmany(timeout_ms=200, max_records=10000)
                for records in batch.values():
                    out.extend((r.timestamp, r.value) for r in records)
                    last = time.monotonic()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return out

    return asyncio.run(run())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[k]
