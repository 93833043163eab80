"""The example subscribers' idempotency, without a broker: de-duplication by change_id, stale sequences,
the consumer-side compaction of the snapshot, the notification outbox, and offsets committed only with
the effects of the records they cover."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from schemas.admin import KeepMargin, TierAtRisk
from schemas.outputs import TierChangeEvent, change_id, direction

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))  # the examples import their shared plumbing as a top-level module

import crm_updater  # noqa: E402
import notification_service  # noqa: E402
import subscriber  # noqa: E402

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FIVE = ("diamond", "platinum", "gold", "silver", "bronze")


def wire_change(customer: str, sequence: int, frm: str | None, to: str, policy: str = "five_tier") -> dict:
    """A tier change exactly as the worker sends it (built from the model, so the examples read the contract)."""
    event = TierChangeEvent(
        change_id=change_id(customer, policy, 1, sequence, to), customer_id=customer, policy=policy,
        policy_version=1, from_tier=frm, to_tier=to, direction=direction(FIVE, frm, to), cause="event",
        score=None, sequence=sequence, event_id=f"e{sequence}", effective_at=NOW, decided_at=NOW,
    )
    return event.model_dump(mode="json", by_alias=True)


def raw(data: dict) -> bytes:
    return json.dumps(data).encode()


@pytest.fixture
def crm_db(tmp_path) -> sqlite3.Connection:
    db = subscriber.open_db(str(tmp_path / "crm.sqlite3"), crm_updater.DDL)
    yield db
    db.close()


def rows(db: sqlite3.Connection) -> dict[tuple[str, str], tuple]:
    return {(r["customer_id"], r["policy"]): (r["tier"], r["sequence"], r["change_id"])
            for r in db.execute("SELECT * FROM customer_tiers")}


def test_crm_applies_newer_changes_and_skips_duplicates_and_stale_ones(crm_db):
    first, second = wire_change("c1", 1, None, "silver"), wire_change("c1", 2, "silver", "gold")
    apply = crm_updater.apply_change
    with crm_db:
        assert apply(crm_db, crm_updater.Change.parse(raw(first))) == "applied"
        assert apply(crm_db, crm_updater.Change.parse(raw(second))) == "applied"
        assert apply(crm_db, crm_updater.Change.parse(raw(second))) == "duplicate"
        assert apply(crm_db, crm_updater.Change.parse(raw(first))) == "stale"
        # an older change never seen before (e.g. re-sent late by another worker) is stale too
        assert apply(crm_db, crm_updater.Change.parse(raw(wire_change("c1", 2, "silver", "bronze")))) == "stale"
    assert rows(crm_db) == {("c1", "five_tier"): ("gold", 2, second["change_id"])}


def test_crm_refuses_an_unknown_contract_version():
    with pytest.raises(crm_updater.UnsupportedVersion):
        crm_updater.Change.parse(raw({**wire_change("c1", 1, None, "gold"), "schema_version": 2}))


def snapshot_record(customer: str, tier: str, version: int, policy: str = "five_tier") -> tuple[bytes, bytes]:
    key = json.dumps([customer, policy], separators=(",", ":")).encode()
    value = {"customer_id": customer, "policy": policy, "policy_version": 1, "tier": tier, "version": version,
             "since": NOW.isoformat(), "updated_at": NOW.isoformat()}
    return key, raw(value)


def test_snapshot_keeps_the_greatest_version_per_key_and_honours_tombstones(crm_db):
    records = [
        snapshot_record("a", "silver", 1), snapshot_record("a", "gold", 3),
        snapshot_record("a", "silver", 2),  # re-sent late: must not roll "a" back
        snapshot_record("b", "bronze", 1), (snapshot_record("b", "bronze", 1)[0], None),  # b deleted
        snapshot_record("c", "gold", 5, policy="order_volume"),
    ]
    latest = crm_updater.latest_per_key(records)
    assert {k: (v["tier"] if v else None) for k, v in latest.items()} == {
        ("a", "five_tier"): "gold", ("b", "five_tier"): None, ("c", "order_volume"): "gold"}
    with crm_db:
        crm_db.execute("INSERT INTO customer_tiers VALUES ('b', 'five_tier', 'gold', 4, 'x')")
        crm_updater.load_snapshot(crm_db, latest)
    assert rows(crm_db) == {("a", "five_tier"): ("gold", None, None), ("c", "order_volume"): ("gold", None, None)}

    # the first change after a bootstrap is applied (the row's sequence is unknown), then protected
    change = wire_change("a", 7, "gold", "platinum")
    with crm_db:
        assert crm_updater.apply_change(crm_db, crm_updater.Change.parse(raw(change))) == "applied"
        assert crm_updater.apply_change(crm_db, crm_updater.Change.parse(raw(change))) == "duplicate"
        assert crm_updater.apply_change(crm_db, crm_updater.Change.parse(raw(wire_change("a", 6, "x", "gold")))) \
            == "stale"
    assert rows(crm_db)[("a", "five_tier")] == ("platinum", 7, change["change_id"])


class FakeConsumer:
    """Just enough of KafkaConsumer for subscriber.follow: hands out the given polls, then nothing."""

    def __init__(self, polls: list[dict]) -> None:
        self.polls = polls
        self.sought: dict[Any, int] = {}

    def assign(self, tps: list) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        self.sought[tp] = offset

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        return self.polls.pop(0) if self.polls else {}


def records(topic: str, values: list[bytes], first_offset: int = 0) -> dict:
    tp = TopicPartition(topic, 0)
    batch = [SimpleNamespace(topic=topic, partition=0, offset=first_offset + i, key=b"k", value=v)
             for i, v in enumerate(values)]
    return {tp: batch}


def test_offsets_commit_only_with_the_effects_of_their_batch(crm_db):
    good = [raw(wire_change("c1", 1, None, "silver")), raw(wire_change("c1", 2, "silver", "gold"))]

    def apply(record):
        crm_updater.apply_change(crm_db, crm_updater.Change.parse(record.value))

    start = {TopicPartition("t", 0): 0}
    assert subscriber.follow(FakeConsumer([records("t", good)]), crm_db, start, apply, exit_when_idle=0) == 2
    assert subscriber.stored_offsets(crm_db, "t") == {0: 2}
    assert rows(crm_db)[("c1", "five_tier")][0] == "gold"

    # a batch that fails half-way leaves neither its rows nor its offsets behind: the restart re-reads it
    bad = [raw(wire_change("c1", 3, "gold", "platinum")), raw({**wire_change("c1", 4, "platinum", "diamond"),
                                                             "schema_version": 9})]
    with pytest.raises(crm_updater.UnsupportedVersion):
        subscriber.follow(FakeConsumer([records("t", bad, 2)]), crm_db, start, apply, exit_when_idle=0)
    assert subscriber.stored_offsets(crm_db, "t") == {0: 2}
    assert rows(crm_db)[("c1", "five_tier")][0] == "gold"


@pytest.fixture
def notify_db(tmp_path) -> sqlite3.Connection:
    db = subscriber.open_db(str(tmp_path / "notify.sqlite3"), notification_service.DDL)
    yield db
    db.close()


def test_notifications_for_top_tier_downgrades_once(notify_db, capsys):
    top = notification_service.DEFAULT_TOP_TIERS
    handle = notification_service.handle_change
    up = wire_change("c1", 1, None, "platinum")
    down = wire_change("c1", 2, "platinum", "gold")
    lower = wire_change("c1", 3, "gold", "silver")  # a downgrade, but not from a top-two tier
    with notify_db:
        assert handle(notify_db, up, top) == "ignored"
        assert handle(notify_db, down, top) == "notified"
        assert handle(notify_db, down, top) == "duplicate"
        assert handle(notify_db, up, top) == "stale"
        assert handle(notify_db, lower, top) == "ignored"
        # superseded before it arrived (sequence 2 < 3): no notification for a move that no longer holds
        late = wire_change("c2", 1, None, "diamond")
        assert handle(notify_db, late, top) == "ignored"
        assert handle(notify_db, wire_change("c2", 3, "platinum", "gold"), top) == "notified"
        assert handle(notify_db, wire_change("c2", 2, "diamond", "platinum"), top) == "stale"
    assert notification_service.deliver_pending(notify_db) == 2
    assert notification_service.deliver_pending(notify_db) == 0  # delivered once, marked sent
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "NOTIFY c1 (five_tier): downgraded platinum -> gold (cause event, effective 2025-03-01T12:00:00Z)",
        "NOTIFY c2 (five_tier): downgraded platinum -> gold (cause event, effective 2025-03-01T12:00:00Z)",
    ]


def test_at_risk_warnings_notify_once_per_scheduled_downgrade(notify_db, capsys):
    warning = TierAtRisk(
        customer_id="c1", policy="five_tier", policy_version=1, tier="gold", to_tier="silver",
        scheduled_at=datetime(2025, 4, 1, tzinfo=UTC), warned_at=NOW, score=58.0,
        keep=KeepMargin(tier="gold", threshold=58.0, inclusive=False, value=55.5, gap=2.5), needs_approval=False,
    ).model_dump(mode="json", by_alias=True)
    with notify_db:
        assert notification_service.handle_at_risk(notify_db, warning) == "notified"
        assert notification_service.handle_at_risk(notify_db, warning) == "duplicate"
    notification_service.deliver_pending(notify_db)
    assert capsys.readouterr().out == (
        "NOTIFY c1 (five_tier): gold at risk, moves to silver at 2025-04-01T00:00:00Z unless it gains 2.5 points\n")


def test_top_tiers_option():
    tiers = notification_service.parse_top_tiers(["credit_class=good", "five_tier=diamond"])
    assert tiers["credit_class"] == ("good",) and tiers["five_tier"] == ("diamond",)
    with pytest.raises(SystemExit):
        notification_service.parse_top_tiers(["five_tier"])
