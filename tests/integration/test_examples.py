"""The example subscribers (examples/) against a real worker on the embedded broker.

Hand-computed expectations (policies five_tier and order_volume; see test_pipeline.py for five_tier):
- alice: one order of 6,000,000 (quantity 1) and assessments 10/10 -> five_tier 75 = gold;
  order_volume: 1 order -> C.
- olga: six orders of 100 with quantity 20,000 on six days -> order_volume A (> 5 orders, > 100K units);
  five_tier 600 (10) + 6 orders (15) + 6 active days (6) + < 1 year (2) = 33 -> bronze.
  Then one order is cancelled: 5 orders, 100K units -> order_volume B (a downgrade from a top-two tier,
  which the notification service reports; order_volume downgrades at once, five_tier only at reviews).

The embedded broker never compacts customer-tiers: the CRM updater's bootstrap keeps the newest record
per key itself (examples/crm_updater.py), which is what the fresh-CRM test relies on.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tierstream.kafka_io import bootstrap, ensure_topics, producer, read_topic

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime.now(UTC).replace(microsecond=0)
IDLE = "1.5"  # seconds without a record after which an example exits (--exit-when-idle)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def order(eid: str, cid: str, amount: str, days_ago: float, status: str = "placed", **extra) -> dict:
    return {"event_id": eid, "customer_id": cid, "occurred_at": at(days_ago), "type": "order",
            "order_id": f"o-{extra.pop('order', eid)}", "status": status, "amount": amount, **extra}


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def run_example(stack, worker, script: str, db: Path, *extra: str) -> str:
    """Run one example to completion (it exits when idle); returns its output. subprocess.run kills it
    if it overruns the timeout, so no process outlives the test."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--broker", bootstrap(stack.broker_url),
         "--prefix", worker.topics.prefix, "--db", str(db), "--exit-when-idle", IDLE, *extra],
        capture_output=True, text=True, timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def crm_rows(db: Path) -> dict[tuple[str, str], tuple]:
    with sqlite3.connect(db) as conn:
        return {(c, p): (t, s, i) for c, p, t, s, i in
                conn.execute("SELECT customer_id, policy, tier, sequence, change_id FROM customer_tiers")}


def last_changes(stack, worker) -> dict[tuple[str, str], dict]:
    """The newest tier change per (customer, policy) on the tier-changes topic."""
    latest: dict[tuple[str, str], dict] = {}
    for _, value, _ in read_topic(stack.broker_url, worker.topics.tier_changes, 0.5):
        change = orjson.loads(value)
        key = (change["customer_id"], change["policy"])
        if key not in latest or change["sequence"] > latest[key]["sequence"]:
            latest[key] = change
    return latest


def snapshot_tiers(stack, worker) -> dict[tuple[str, str], str]:
    """The newest snapshot record's tier per key (the broker does not compact: we do, by version)."""
    newest: dict[tuple[str, str], dict] = {}
    for key, value, _ in read_topic(stack.broker_url, worker.topics.customer_tiers, 0.5):
        record = orjson.loads(value)
        k = tuple(orjson.loads(key))
        if k not in newest or record["version"] >= newest[k]["version"]:
            newest[k] = record
    return {k: r["tier"] for k, r in newest.items()}


EXPECTED = {
    ("alice", "five_tier"): "gold", ("alice", "order_volume"): "C",
    ("olga", "five_tier"): "bronze", ("olga", "order_volume"): "B",
}


@pytest.fixture(scope="module")
def scenario(stack, make_module_worker, tmp_path_factory):
    """A worker with both policies; a CRM updater deployed before any data (its bootstrap finds an empty
    snapshot and stores offset 0), then events that move alice up and olga up and down."""
    worker = make_module_worker(policies="five_tier,order_volume")
    ensure_topics(stack.broker_url, [*worker.topics.all_consumed(), *worker.topics.all_produced()], 4)
    worker.start()
    home = tmp_path_factory.mktemp("examples")
    crm_db = home / "crm.sqlite3"
    out = run_example(stack, worker, "crm_updater.py", crm_db)
    assert "bootstrapped 0 rows" in out and crm_rows(crm_db) == {}

    prod = producer(stack.broker_url)

    def send(event: dict) -> None:
        prod.send(worker.topics.input(event["type"]), key=event["customer_id"].encode(), value=orjson.dumps(event))
        prod.flush()

    send(order("a1", "alice", "6000000", 10))
    send({"event_id": "a2", "customer_id": "alice", "occurred_at": at(10), "type": "profile",
          "assessments": {"growth_potential": 10, "strategic_value": 10}})
    for i in range(6):
        send(order(f"o{i}", "olga", "100", 60 - i * 10, quantity=20000))
    # the cancellation must come after olga reached A (else one batch may go straight to B)
    wait_for(lambda: last_changes(stack, worker).get(("olga", "order_volume"), {}).get("to") == "A", what="olga A")
    send(order("o6", "olga", "100", 5, status="cancelled", order="o0", quantity=20000))
    wait_for(lambda: {k: c["to"] for k, c in last_changes(stack, worker).items()} == EXPECTED,
             what="expected tier changes")
    wait_for(lambda: snapshot_tiers(stack, worker) == EXPECTED, what="snapshot up to date")
    yield worker, send, home, crm_db, prod
    prod.close()


def test_crm_updater_and_notification_service_apply_changes_once(stack, scenario):
    worker, _, home, crm_db, prod = scenario
    latest = last_changes(stack, worker)

    run_example(stack, worker, "crm_updater.py", crm_db)  # resumes from the offsets stored before the data
    rows = crm_rows(crm_db)
    assert {k: r[0] for k, r in rows.items()} == EXPECTED
    assert {k: (r[1], r[2]) for k, r in rows.items()} == {
        k: (c["sequence"], c["change_id"]) for k, c in latest.items()}

    notify_db = home / "notify.sqlite3"
    out = run_example(stack, worker, "notification_service.py", notify_db, "--from-beginning")
    downgrade = latest["olga", "order_volume"]
    assert [line for line in out.splitlines() if line.startswith("NOTIFY")] == [
        f"NOTIFY olga (order_volume): downgraded A -> B (cause event, effective {downgrade['effective_at']})"
    ]

    # Re-deliveries: the newest change again (a duplicate), an older one, and an older sequence with a new
    # change_id (say, from a zombie worker): all three leave the stores as they were.
    older = [orjson.loads(v) for _, v, _ in read_topic(stack.broker_url, worker.topics.tier_changes, 0.5)]
    olga_a = next(c for c in older if c["customer_id"] == "olga" and c["to"] == "A")
    zombie = {**downgrade, "change_id": "zombie", "sequence": downgrade["sequence"] - 1, "to": "C"}
    for change in (downgrade, olga_a, zombie):
        prod.send(worker.topics.tier_changes, key=change["customer_id"].encode(), value=orjson.dumps(change))
    prod.flush()

    out = run_example(stack, worker, "crm_updater.py", crm_db)
    assert "stopped after 3 changes: {'applied': 0, 'duplicate': 1, 'stale': 2}" in out, out
    assert crm_rows(crm_db) == rows
    out = run_example(stack, worker, "notification_service.py", notify_db)
    assert "NOTIFY" not in out and "'duplicate': 1" in out and "'stale': 2" in out, out
    with sqlite3.connect(notify_db) as conn:
        assert conn.execute("SELECT count(*), sum(sent) FROM notifications").fetchone() == (1, 1)


def test_fresh_crm_updater_bootstraps_from_the_snapshot(stack, scenario):
    worker, send, home, _, _ = scenario
    fresh = home / "fresh-crm.sqlite3"
    out = run_example(stack, worker, "crm_updater.py", fresh)
    assert "bootstrapped 4 rows" in out, out
    rows = crm_rows(fresh)
    assert {k: r[0] for k, r in rows.items()} == EXPECTED
    # snapshot records carry their last change's sequence and change_id, exactly as on tier-changes
    latest = last_changes(stack, worker)
    assert {k: (r[1], r[2]) for k, r in rows.items()} == {
        k: (latest[k]["sequence"], latest[k]["change_id"]) for k in rows}
    assert "stopped after 0 changes" in out  # the old tier changes were not replayed

    # then it follows tier-changes from where the snapshot left off: olga orders again -> A
    send(order("o7", "olga", "100", 1, quantity=20000))
    wait_for(lambda: last_changes(stack, worker)["olga", "order_volume"]["to"] == "A", what="olga A again")
    run_example(stack, worker, "crm_updater.py", fresh)
    change = last_changes(stack, worker)["olga", "order_volume"]
    assert crm_rows(fresh)["olga", "order_volume"] == ("A", change["sequence"], change["change_id"])
    alice = last_changes(stack, worker)["alice", "five_tier"]
    assert crm_rows(fresh)["alice", "five_tier"] == ("gold", alice["sequence"], alice["change_id"])
