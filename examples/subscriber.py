"""Plumbing shared by the example subscribers (kafka-python, no Faust): a consumer without a consumer group
whose offsets live in the subscriber's own sqlite database, committed in the same transaction as the
effects of the records they cover.

Why not a consumer group with committed offsets:
- A group commits offsets to Kafka, separately from the sqlite write: a crash between the two either
  replays records (harmless here: the subscribers are idempotent) or, if offsets were committed first,
  loses them. Storing the offsets in the same sqlite transaction as the effects makes every record count
  exactly once in the database, with nothing to reconcile.
- kafka-python's group protocol works on the embedded test broker only with a small
  ``max_poll_interval_ms`` (~5000; see BROKER-NOTES.md); manual assignment has no such limit.
- The price: no automatic partition balancing. One process owns one database and reads every partition,
  which is plenty for tier changes (one record per customer move). To scale out, give each process its
  own database and a subset of partitions.

Run the examples, not this module: ``python examples/crm_updater.py --help``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

log = logging.getLogger("subscriber")

OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS consumer_offsets (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,   -- the next record to read: last applied offset + 1
    PRIMARY KEY (topic, partition)
)
"""


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every example takes: broker, topic prefix, database, and a bounded run for tests and demos."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--broker", default="127.0.0.1:9092", help="bootstrap servers, host:port[,host:port]")
    parser.add_argument("--prefix", default="tierstream.", help="topic prefix (TIERSTREAM_TOPIC_PREFIX)")
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS", default=None,
                        help="exit after this long without a record (default: run until SIGTERM or Ctrl-C)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every record")
    return parser


def setup_logging(verbose: bool) -> None:
    """Our lines at INFO (DEBUG with ``-v``); kafka-python's own INFO chatter only with ``-v``."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.INFO if verbose else logging.WARNING)


def open_db(path: str, ddl: Iterable[str]) -> sqlite3.Connection:
    """Open (and create) the database; every statement of ``ddl`` plus the offsets table."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")  # readers (a CRM UI, the tests) do not block the writer
    with db:
        for statement in [*ddl, OFFSETS_DDL]:
            db.execute(statement)
    return db


def stored_offsets(db: sqlite3.Connection, topic: str) -> dict[int, int]:
    """Partition -> next offset to read, as committed with the data (empty: never started)."""
    rows = db.execute("SELECT partition, next_offset FROM consumer_offsets WHERE topic = ?", (topic,))
    return {int(r["partition"]): int(r["next_offset"]) for r in rows}


def store_offsets(db: sqlite3.Connection, topic: str, offsets: Mapping[int, int]) -> None:
    """Record next offsets (call inside the transaction that applies the records they cover)."""
    db.executemany(
        "INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        [(topic, p, o) for p, o in offsets.items()],
    )


def connect(broker: str, client_id: str) -> KafkaConsumer:
    """A consumer with no group: we assign partitions and seek ourselves, and never commit to Kafka."""
    return KafkaConsumer(
        bootstrap_servers=broker.split(","),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        # A stored offset the broker no longer has (retention deleted it) restarts at the oldest record;
        # the CRM updater notices this before it happens and bootstraps from the snapshot instead.
        auto_offset_reset="earliest",
    )


def partitions(consumer: KafkaConsumer, topic: str, timeout: float = 30.0) -> list[TopicPartition]:
    """Every partition of ``topic``, waiting for the topic to exist (the worker may create it later)."""
    deadline = time.monotonic() + timeout
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise SystemExit(f"topic {topic} does not exist (is the prefix right?)")
        time.sleep(0.5)


def end_offsets(consumer: KafkaConsumer, tps: list[TopicPartition], timeout: float = 5.0) -> dict[TopicPartition, int]:
    """The end offsets of ``tps`` now: every record before them has been written.

    On real Kafka that is ``end_offsets()``. The embedded broker answers the last batch's first offset + 1
    instead, short of the end when a producer batched several records, so we read on from the answer
    until nothing more comes (or ``timeout``) and take the positions: never earlier than the true end.
    """
    reported = consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, reported[tp])
    deadline = time.monotonic() + timeout
    while consumer.poll(timeout_ms=300) and time.monotonic() < deadline:
        pass
    return {tp: consumer.position(tp) for tp in tps}


def read_to_end(consumer: KafkaConsumer, topic: str, timeout: float = 300.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning up to its end offsets as of the call.

    The embedded broker reports an end offset that can be short of the true end (the last batch's first
    offset + 1), so after reaching the reported ends we poll once more to take the rest of the last
    batches. Anything written after this read is not needed: callers follow the change topic from offsets
    noted before the read.
    """
    tps = partitions(consumer, topic)
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        if time.monotonic() > deadline:
            raise SystemExit(f"could not read {topic} to its end within {timeout:.0f}s")
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    for batch in consumer.poll(timeout_ms=300).values():
        records.extend(batch)
    return records


def follow(
    consumer: KafkaConsumer,
    db: sqlite3.Connection,
    start: Mapping[TopicPartition, int],
    apply: Callable[[ConsumerRecord], None],
    exit_when_idle: float | None = None,
    after_commit: Callable[[], None] | None = None,
) -> int:
    """Read from ``start`` on; for each polled batch, ``apply`` every record and store the next offsets in
    one sqlite transaction, then call ``after_commit`` (side effects outside the database go there, so
    they only ever act on committed state). Returns the number of records read when stopped (SIGTERM,
    SIGINT, or ``exit_when_idle`` seconds without a record).

    A record that raises stops the program before its batch commits, so nothing of that batch counts and
    the next start reads it again: fix the cause (e.g. a new contract version) and restart.
    """
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    seen = 0
    last = time.monotonic()
    with _StopFlag() as stop:
        while not stop.requested:
            polled = consumer.poll(timeout_ms=200, max_records=500)
            if not polled:
                if exit_when_idle is not None and time.monotonic() - last >= exit_when_idle:
                    break
                continue
            with db:  # one transaction: the effects and the offsets, or neither
                for tp, batch in polled.items():
                    for record in batch:
                        apply(record)
                    store_offsets(db, tp.topic, {tp.partition: batch[-1].offset + 1})
            if after_commit is not None:
                after_commit()
            seen += sum(len(b) for b in polled.values())
            last = time.monotonic()
    return seen


class _StopFlag:
    """While entered, SIGTERM and SIGINT set a flag instead of killing the process, so the current batch
    finishes and commits before the program exits; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _request(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
