"""Example subscriber: keep a CRM table of every customer's tier per policy, fed by tierstream.

    python examples/crm_updater.py --broker 127.0.0.1:9092 --prefix tierstream. --db crm.sqlite3

The table is ``customer_tiers(customer_id, policy, tier, sequence, change_id)``, one row per customer and
policy, in a sqlite file (stand-in for the CRM's database).

First start (the database has no offsets): bootstrap from the snapshot instead of replaying history.
1. Note the end offsets of ``<prefix>tier-changes`` *before* reading the snapshot, so that no change made
   while we read is missed: every change after the noted offsets is applied afterwards.
2. Read ``<prefix>customer-tiers`` from the beginning to its end. It is compacted on real Kafka, but a
   key may still appear many times before compaction runs (and always on the embedded broker, which
   never compacts), so we keep the record with the greatest ``version`` per key ourselves.
3. Write those rows and the noted offsets in one transaction.

Then follow ``tier-changes`` from the stored offsets, forever (or until ``--exit-when-idle``). Delivery is
at least once, so each change is checked against the stored row before it is applied:
- same ``change_id`` as the stored row: a duplicate, skipped;
- ``sequence`` not greater than the stored one: stale (an older change delivered late), skipped;
- otherwise: the row becomes the change's ``to`` tier, sequence and change_id.
Each polled batch's rows and next offsets are committed in one sqlite transaction (see subscriber.py).

Snapshot records carry the ``sequence`` and ``change_id`` of their last tier change, so rows loaded from
the snapshot reject a stale or repeated change like any other row: the changes made between noting the
offsets and reading the snapshot are already in the snapshot and are skipped as not newer. (Records that
lack them leave the row's sequence NULL: the next change is then taken as newer.)
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from subscriber import (
    base_parser,
    connect,
    end_offsets,
    follow,
    open_db,
    partitions,
    read_to_end,
    setup_logging,
    store_offsets,
    stored_offsets,
)

log = logging.getLogger("crm_updater")

#: The tier change contract's major version this program understands (TierChangeEvent.schema_version).
SCHEMA_VERSION = 1

DDL = [
    """
    CREATE TABLE IF NOT EXISTS customer_tiers (
        customer_id TEXT    NOT NULL,
        policy      TEXT    NOT NULL,
        tier        TEXT    NOT NULL,
        sequence    INTEGER,            -- of the last applied change; NULL when the row came from the snapshot
        change_id   TEXT,               -- likewise
        PRIMARY KEY (customer_id, policy)
    )
    """
]

Verdict = Literal["applied", "duplicate", "stale"]


class UnsupportedVersion(RuntimeError):
    """A tier change of a contract major version this program does not know: stop rather than guess."""


@dataclass(frozen=True, slots=True)
class Change:
    """The fields of a tier change the CRM uses (the full record has more: see docs/schemas/)."""

    change_id: str
    customer_id: str
    policy: str
    from_tier: str | None
    to_tier: str
    sequence: int

    @classmethod
    def parse(cls, value: bytes) -> Change:
        """Decode one ``tier-changes`` record value (JSON, wire names ``from``/``to``)."""
        data = json.loads(value)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UnsupportedVersion(f"tier change schema_version {data.get('schema_version')!r}")
        return cls(data["change_id"], data["customer_id"], data["policy"], data["from"], data["to"],
                   int(data["sequence"]))


def verdict(stored: Mapping[str, Any] | None, change: Change) -> Verdict:
    """Whether ``change`` should be applied over the ``stored`` row (None: no row yet)."""
    if stored is None:
        return "applied"
    if stored["change_id"] == change.change_id:
        return "duplicate"
    if stored["sequence"] is not None and change.sequence <= stored["sequence"]:
        return "stale"
    return "applied"


def apply_change(db: sqlite3.Connection, change: Change) -> Verdict:
    """Apply one change to the table unless it is a duplicate or stale (inside the caller's transaction)."""
    stored = db.execute(
        "SELECT tier, sequence, change_id FROM customer_tiers WHERE customer_id = ? AND policy = ?",
        (change.customer_id, change.policy),
    ).fetchone()
    result = verdict(stored, change)
    if result == "applied":
        db.execute(
            "INSERT INTO customer_tiers (customer_id, policy, tier, sequence, change_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (customer_id, policy) DO UPDATE SET "
            "tier = excluded.tier, sequence = excluded.sequence, change_id = excluded.change_id",
            (change.customer_id, change.policy, change.to_tier, change.sequence, change.change_id),
        )
    return result


def latest_per_key(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[tuple[str, str], dict | None]:
    """Compaction done by the consumer: (customer_id, policy) -> newest snapshot record, None if deleted.

    Records come in offset order (one key is always on one partition). The greatest ``version`` wins, so
    a record re-sent late cannot roll a key back; a tombstone (null value) deletes the key.
    """
    latest: dict[tuple[str, str], dict | None] = {}
    for key, value in records:
        if key is None:
            continue  # not a snapshot record (the worker always keys them)
        customer_id, policy = json.loads(key)
        if value is None:
            latest[(customer_id, policy)] = None
            continue
        record = json.loads(value)
        previous = latest.get((customer_id, policy))
        if previous is None or record["version"] >= previous["version"]:
            latest[(customer_id, policy)] = record
    return latest


def load_snapshot(db: sqlite3.Connection, latest: Mapping[tuple[str, str], dict | None]) -> None:
    """Write the snapshot's rows (inside the caller's transaction), with the sequence and change_id of
    each row's last tier change (NULL from a worker older than schema 1.1 that did not send them)."""
    for (customer_id, policy), record in latest.items():
        if record is None:
            db.execute("DELETE FROM customer_tiers WHERE customer_id = ? AND policy = ?", (customer_id, policy))
        else:
            db.execute(
                "INSERT INTO customer_tiers (customer_id, policy, tier, sequence, change_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id, policy) DO UPDATE SET "
                "tier = excluded.tier, sequence = excluded.sequence, change_id = excluded.change_id",
                (customer_id, policy, record["tier"], record.get("sequence"), record.get("change_id")),
            )


def bootstrap(consumer: KafkaConsumer, db: sqlite3.Connection, changes_topic: str, snapshot_topic: str) -> None:
    """Load the snapshot and store the tier-changes offsets to follow from (one transaction)."""
    change_tps = partitions(consumer, changes_topic)
    start = end_offsets(consumer, change_tps)  # noted before the snapshot is read: see the module docstring
    records = read_to_end(consumer, snapshot_topic)
    latest = latest_per_key((r.key, r.value) for r in records)
    with db:
        load_snapshot(db, latest)
        store_offsets(db, changes_topic, {tp.partition: offset for tp, offset in start.items()})
    log.info("bootstrapped %d rows from %d snapshot records; following %s from %s", len(latest), len(records),
             changes_topic, {tp.partition: o for tp, o in start.items()})


def start_offsets(consumer: KafkaConsumer, db: sqlite3.Connection, changes_topic: str) -> dict[TopicPartition, int]:
    """Where to follow tier-changes from: the stored offsets; empty when a bootstrap is needed (first
    start, or retention deleted changes we never read)."""
    tps = partitions(consumer, changes_topic)
    stored = stored_offsets(db, changes_topic)
    if not stored:
        return {}
    oldest = consumer.beginning_offsets(tps)
    if any(stored.get(tp.partition, 0) < oldest[tp] for tp in tps):
        log.warning("changes we never read were deleted by retention: bootstrapping from the snapshot again")
        return {}
    return {tp: stored.get(tp.partition, oldest[tp]) for tp in tps}


def main(argv: list[str] | None = None) -> int:
    """Bootstrap if needed, then follow tier-changes; returns the exit code."""
    parser = base_parser("Keep a CRM table of customer tiers up to date from tierstream.")
    parser.add_argument("--db", default="crm.sqlite3", help="sqlite file of the CRM table (created if missing)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    changes_topic = f"{args.prefix}tier-changes"
    snapshot_topic = f"{args.prefix}customer-tiers"
    db = open_db(args.db, DDL)
    consumer = connect(args.broker, "crm-updater")
    counts = {"applied": 0, "duplicate": 0, "stale": 0}

    def apply(record: ConsumerRecord) -> None:
        change = Change.parse(record.value)
        result = apply_change(db, change)
        counts[result] += 1
        log.debug("%s %s/%s %s -> %s (sequence %d)", result, change.customer_id, change.policy,
                  change.from_tier, change.to_tier, change.sequence)

    try:
        start = start_offsets(consumer, db, changes_topic)
        if not start:
            bootstrap(consumer, db, changes_topic, snapshot_topic)
            start = start_offsets(consumer, db, changes_topic)
        read = follow(consumer, db, start, apply, args.exit_when_idle)
    except UnsupportedVersion as exc:
        log.error("%s: upgrade this program; nothing of the batch was applied", exc)
        return 2
    finally:
        consumer.close()
        db.close()
    log.info("stopped after %d changes: %s", read, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
