"""Example subscriber: tell account managers about important tier moves.

    python examples/notification_service.py --broker 127.0.0.1:9092 --prefix tierstream. \\
        --db notifications.sqlite3 [--from-beginning] [--top-tiers five_tier=diamond,platinum]

It follows two topics and records a notification for
- a downgrade from one of a policy's top two tiers (``<prefix>tier-changes``, ``direction`` = ``down``);
  the top tiers per policy come from ``--top-tiers`` (defaults below for the presets it knows), because a
  tier change names tiers but not their rank;
- every at-risk warning (``<prefix>tier-at-risk``): a downgrade is scheduled unless the customer recovers.

Delivery is at least once, so:
- every notification has an id (a move: its ``change_id``; a warning: customer, policy, tier and scheduled
  time, which identify one scheduled downgrade) and is inserted only if the id is new: a re-delivered
  record never notifies twice;
- the last ``sequence`` seen per customer and policy is kept; a change not newer than it is stale (it was
  already superseded, e.g. a downgrade undone by a later upgrade) and notifies nobody.

The ``notifications`` table is an outbox: rows are committed with the consumer offsets (subscriber.py),
and only then delivered (here: printed) and marked sent. A crash between delivering and marking delivers
that notification again on restart, never loses one; a real sender passes the id to the mail or chat
service as its idempotency key.

Where to start: a notification is about a move, and the tier a customer holds is not news, so this
service has no use for the ``customer-tiers`` snapshot. On its first start it begins at the end of both
topics (only new moves), or at their beginning with ``--from-beginning`` (a replay, or a demo).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from subscriber import (
    base_parser,
    connect,
    end_offsets,
    follow,
    open_db,
    partitions,
    setup_logging,
    store_offsets,
    stored_offsets,
)

log = logging.getLogger("notification_service")

#: Contract major versions understood (TierChangeEvent / TierAtRisk ``schema_version``).
SCHEMA_VERSION = 1

#: The two highest tiers of the presets this example knows (scoring/presets/*.yaml list tiers high first).
DEFAULT_TOP_TIERS: dict[str, tuple[str, ...]] = {
    "five_tier": ("diamond", "platinum"),
    "order_volume": ("A", "B"),
    "sabcd": ("S", "A"),
}

DDL = [
    """
    CREATE TABLE IF NOT EXISTS notifications (
        id          TEXT PRIMARY KEY,   -- change_id, or at-risk:<customer>:<policy>:<tier>:<scheduled_at>
        kind        TEXT NOT NULL,      -- downgrade | at_risk
        customer_id TEXT NOT NULL,
        policy      TEXT NOT NULL,
        message     TEXT NOT NULL,
        sent        INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS last_sequence (
        customer_id TEXT    NOT NULL,
        policy      TEXT    NOT NULL,
        sequence    INTEGER NOT NULL,
        PRIMARY KEY (customer_id, policy)
    )
    """,
]


class UnsupportedVersion(RuntimeError):
    """A record of a contract major version this program does not know: stop rather than guess."""


def _load(value: bytes) -> dict[str, Any]:
    data = json.loads(value)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UnsupportedVersion(f"schema_version {data.get('schema_version')!r}")
    return data


def downgrade_message(change: Mapping[str, Any], top_tiers: Mapping[str, Sequence[str]]) -> str | None:
    """The notification text for a tier change, or None when the move is not important."""
    if change["direction"] != "down" or change["from"] not in top_tiers.get(change["policy"], ()):
        return None
    return (f"{change['customer_id']} ({change['policy']}): downgraded {change['from']} -> {change['to']} "
            f"(cause {change['cause']}, effective {change['effective_at']})")


def at_risk_message(warning: Mapping[str, Any]) -> str:
    """The notification text for an at-risk warning."""
    text = (f"{warning['customer_id']} ({warning['policy']}): {warning['tier']} at risk, moves to "
            f"{warning['to_tier']} at {warning['scheduled_at']}")
    keep = warning.get("keep")
    if keep and keep.get("gap", 0) > 0:
        text += f" unless it gains {keep['gap']:g} points"
    if warning.get("needs_approval"):
        text += " (the downgrade will need approval)"
    return text


def handle_change(db: sqlite3.Connection, change: Mapping[str, Any], top_tiers: Mapping[str, Sequence[str]]) -> str:
    """Record what one tier change means (inside the caller's transaction); returns what happened:
    ``notified``, ``duplicate``, ``stale`` or ``ignored`` (not important)."""
    row = db.execute("SELECT sequence FROM last_sequence WHERE customer_id = ? AND policy = ?",
                     (change["customer_id"], change["policy"])).fetchone()
    if row is not None and change["sequence"] <= row["sequence"]:
        # Not newer than what we have seen: a re-delivery (same change_id) or a superseded change.
        seen = db.execute("SELECT 1 FROM notifications WHERE id = ?", (change["change_id"],)).fetchone()
        return "duplicate" if seen else "stale"
    db.execute(
        "INSERT INTO last_sequence (customer_id, policy, sequence) VALUES (?, ?, ?) "
        "ON CONFLICT (customer_id, policy) DO UPDATE SET sequence = excluded.sequence",
        (change["customer_id"], change["policy"], change["sequence"]),
    )
    message = downgrade_message(change, top_tiers)
    if message is None:
        return "ignored"
    return _record(db, change["change_id"], "downgrade", change, message)


def handle_at_risk(db: sqlite3.Connection, warning: Mapping[str, Any]) -> str:
    """Record an at-risk warning (inside the caller's transaction): ``notified`` or ``duplicate``."""
    ident = f"at-risk:{warning['customer_id']}:{warning['policy']}:{warning['tier']}:{warning['scheduled_at']}"
    return _record(db, ident, "at_risk", warning, at_risk_message(warning))


def _record(db: sqlite3.Connection, ident: str, kind: str, data: Mapping[str, Any], message: str) -> str:
    inserted = db.execute(
        "INSERT OR IGNORE INTO notifications (id, kind, customer_id, policy, message) VALUES (?, ?, ?, ?, ?)",
        (ident, kind, data["customer_id"], data["policy"], message),
    ).rowcount
    return "notified" if inserted else "duplicate"


def deliver_pending(db: sqlite3.Connection) -> int:
    """Deliver (print) every committed, unsent notification, then mark it sent; returns how many."""
    rows = db.execute("SELECT id, message FROM notifications WHERE sent = 0 ORDER BY rowid").fetchall()
    for row in rows:
        print(f"NOTIFY {row['message']}", flush=True)
        with db:
            db.execute("UPDATE notifications SET sent = 1 WHERE id = ?", (row["id"],))
    return len(rows)


def parse_top_tiers(values: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``POLICY=T1,T2`` options over the defaults."""
    tiers = dict(DEFAULT_TOP_TIERS)
    for value in values:
        policy, sep, names = value.partition("=")
        if not sep or not policy or not names:
            raise SystemExit(f"--top-tiers {value!r}: expected POLICY=TIER[,TIER]")
        tiers[policy] = tuple(n.strip() for n in names.split(",") if n.strip())
    return tiers


def start_offsets(
    consumer: KafkaConsumer, db: sqlite3.Connection, topics: Sequence[str], from_beginning: bool
) -> dict[TopicPartition, int]:
    """The stored offsets; on the first start the topics' end (or beginning), stored at once so that a
    restart before the first record does not skip what arrived meanwhile."""
    start: dict[TopicPartition, int] = {}
    for topic in topics:
        tps = partitions(consumer, topic)
        stored = stored_offsets(db, topic)
        if stored:
            oldest = consumer.beginning_offsets(tps)
            start.update({tp: stored.get(tp.partition, oldest[tp]) for tp in tps})
            continue
        first = consumer.beginning_offsets(tps) if from_beginning else end_offsets(consumer, tps)
        with db:
            store_offsets(db, topic, {tp.partition: o for tp, o in first.items()})
        start.update(first)
    return start


def main(argv: list[str] | None = None) -> int:
    """Follow tier-changes and tier-at-risk and notify; returns the exit code."""
    parser = base_parser("Notify account managers of important tier moves from tierstream.")
    parser.add_argument("--db", default="notifications.sqlite3", help="sqlite file of the notification outbox")
    parser.add_argument("--from-beginning", action="store_true",
                        help="on the first start, read the topics from their beginning (default: their end)")
    parser.add_argument("--top-tiers", action="append", default=[], metavar="POLICY=T1,T2",
                        help="the tiers whose loss is notified, per policy (repeatable)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    top_tiers = parse_top_tiers(args.top_tiers)
    changes_topic, at_risk_topic = f"{args.prefix}tier-changes", f"{args.prefix}tier-at-risk"
    db = open_db(args.db, DDL)
    consumer = connect(args.broker, "notification-service")
    counts: dict[str, int] = {}

    def apply(record: ConsumerRecord) -> None:
        data = _load(record.value)
        is_change = record.topic == changes_topic
        result = handle_change(db, data, top_tiers) if is_change else handle_at_risk(db, data)
        counts[result] = counts.get(result, 0) + 1
        log.debug("%s: %s", result, data)

    try:
        start = start_offsets(consumer, db, [changes_topic, at_risk_topic], args.from_beginning)
        deliver_pending(db)  # whatever a previous run committed but did not deliver
        read = follow(consumer, db, start, apply, args.exit_when_idle, after_commit=lambda: deliver_pending(db))
    except UnsupportedVersion as exc:
        log.error("%s: upgrade this program; nothing of the batch was applied", exc)
        return 2
    finally:
        consumer.close()
        db.close()
    log.info("stopped after %d records: %s", read, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
