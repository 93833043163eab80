"""Walking skeleton, end to end on the real broker and Redis: events in, tiers out.

Expectations are computed by hand from the five_tier preset (scoring/presets/five_tier.yaml):
cumulative spend 0–1M -> 10, (1M, 5M] -> 20, > 5M -> 30; orders last 12 months 1–2 -> 5, 3–5 -> 10,
> 5 -> 15; active days in 90 days [1, 5) -> 3, [5, 15) -> 6; years as customer < 1 -> 2; assessments
growth (15) and strategic (20) scaled from 0..10; bands diamond > 90, platinum (75, 90], gold (60, 75],
silver (40, 60], bronze <= 40.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis

from tierstream.kafka_io import ensure_topics, producer, read_topic

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def order(eid: str, cid: str, amount: str, days_ago: float, **extra) -> dict:
    return {"event_id": eid, "customer_id": cid, "occurred_at": at(days_ago), "type": "order",
            "order_id": f"o-{eid}", "status": "placed", "amount": amount, **extra}


@pytest.fixture(scope="module")
def pipeline(stack, make_module_worker):
    worker = make_module_worker()
    ensure_topics(stack.broker_url, [*worker.topics.all_consumed(), *worker.topics.all_produced()], 4)
    worker.start()
    prod = producer(stack.broker_url)

    def send(event: dict | bytes, topic_type: str | None = None, key: bytes | str | None = "auto") -> None:
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        kind = topic_type or (event["type"] if isinstance(event, dict) else "order")
        k = event["customer_id"].encode() if key == "auto" and isinstance(event, dict) else key
        prod.send(worker.topics.input(kind), key=k if k != "auto" else None, value=raw)
        prod.flush()

    yield worker, send
    prod.close()


def changes_for(stack, worker, customer_id: str, want: int = 1, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = [orjson.loads(v) for k, v, _ in read_topic(stack.broker_url, worker.topics.tier_changes, 0.5)
                 if k == customer_id.encode()]
        if len(found) >= want:
            return found
        time.sleep(0.3)
    return found


def redis_tier(stack, worker, customer_id: str, policy: str = "five_tier", timeout: float = 20.0) -> dict:
    client = redis.Redis.from_url(stack.redis_url)
    key = f"{worker.env['TIERSTREAM_REDIS_PREFIX']}tier:{customer_id}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.hget(key, policy)
        if raw is not None:
            return orjson.loads(raw)
        time.sleep(0.2)
    raise AssertionError(f"no read-model record for {customer_id}")


def scrape(worker, name: str) -> float:
    """Sum of a metric's samples on the worker's /metrics page."""
    # a worker busy with a large batch answers late: wait rather than fail
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=20) as resp:
        return sum(float(line.rpartition(" ")[2]) for line in resp.read().decode().splitlines()
                   if line.startswith((name + " ", name + "{")))


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_events_lead_to_expected_tier_on_topic_and_in_redis(stack, pipeline):
    worker, send = pipeline
    # alice: 6,000,000 lifetime (30) + 1 order last year (5) + 1 active day (3) + < 1 year (2)
    #        + growth 10/10 (15) + strategic 10/10 (20) = 75 -> gold
    send(order("a1", "alice", "6000000", 10))
    send({"event_id": "a2", "customer_id": "alice", "occurred_at": at(10), "type": "profile",
          "assessments": {"growth_potential": 10, "strategic_value": 10}})
    last = wait_for(lambda: [c for c in changes_for(stack, worker, "alice") if c["to"] == "gold"],
                    what="alice -> gold")[-1]
    assert last["score"] == 75.0 and last["policy"] == "five_tier" and last["policy_version"] == 1
    assert last["event_id"] in {"a1", "a2"} and last["customer_id"] == "alice"
    assert last["explanation"]["score"] == 75.0
    record = wait_for(lambda: (r := redis_tier(stack, worker, "alice")) and r["tier"] == "gold" and r,
                      what="alice gold in redis")
    assert record["score"] == 75.0 and record["routing"]["queue"] == "priority"

    # bob: 6 orders of 200,000 on 6 days in the last 90 days: 1.2M (20) + 6 orders (15) + 6 active days
    #      (6) + < 1 year (2) = 43 -> silver
    for i in range(6):
        send(order(f"b{i}", "bob", "200000", 80 - i * 10))
    wait_for(lambda: redis_tier(stack, worker, "bob").get("score") == 43.0, what="bob scored 43")
    assert redis_tier(stack, worker, "bob")["tier"] == "silver"
    assert changes_for(stack, worker, "bob")[-1]["to"] == "silver"


def test_malformed_event_is_dead_lettered_and_stream_goes_on(stack, pipeline):
    worker, send = pipeline
    send(b'{"event_id": "x1", broken', topic_type="order", key=b"carol")
    send({"event_id": "x2", "customer_id": "carol", "occurred_at": at(1), "type": "login"},
         topic_type="order")  # a login on the order topic
    send({"event_id": "x3", "customer_id": "carol", "occurred_at": at(1), "type": "order",
          "order_id": "o", "status": "placed", "amount": "-5"})
    send(order("c1", "carol", "100", 1))  # the next valid event is still processed
    wait_for(lambda: redis_tier(stack, worker, "carol"), what="carol processed")
    dead = wait_for(lambda: [x for x in read_topic(stack.broker_url, worker.topics.dead_letters, 0.5)
                             if x[0] == b"carol"] if True else None, what="dead letters")
    dead = wait_for(lambda: (d := [x for x in read_topic(stack.broker_url, worker.topics.dead_letters, 0.5)
                                   if x[0] == b"carol"]) and len(d) >= 3 and d, what="3 dead letters")
    by_reason = {dict(h)["tierstream.reason"].decode(): (v, dict(h)) for _, v, h in dead}
    assert set(by_reason) == {"invalid_json", "wrong_topic", "schema"}
    original, headers = by_reason["invalid_json"]
    assert original == b'{"event_id": "x1", broken'  # the original bytes, verbatim
    assert headers["tierstream.source.topic"].decode() == worker.topics.input("order")
    assert int(headers["tierstream.source.offset"]) >= 0
    assert b"amount" in by_reason["schema"][1]["tierstream.detail"]


def test_duplicate_event_id_is_not_counted_twice(stack, pipeline):
    worker, send = pipeline
    # dave: one order of 600,000 sent twice with the same event_id: 600k (10) + 1 order (5) + 1 day (3)
    #       + < 1 year (2) = 20. Counted twice it would be 1.2M (20) + 2 orders (5) ... = 30.
    dup = order("d1", "dave", "600000", 5)
    send(dup)
    send(dup)
    send({"event_id": "d2", "customer_id": "dave", "occurred_at": at(5), "type": "login"})
    wait_for(lambda: scrape(worker, "tierstream_duplicate_events_total") >= 1, what="the duplicate seen")
    wait_for(lambda: redis_tier(stack, worker, "dave").get("tier"), what="dave scored")
    assert redis_tier(stack, worker, "dave")["score"] == 20.0


def test_unkeyed_records_are_repartitioned_by_customer(stack, pipeline):
    worker, send = pipeline
    # erin's events arrive without a key: re-keyed through the repartition topic, then processed
    send(order("e1", "erin", "2000000", 3), key=None)
    send(order("e2", "erin", "1", 2), key=b"someone-else")
    # 2,000,001 (20) + 2 orders (5) + 2 active days (3) + < 1 year (2) = 30
    wait_for(lambda: redis_tier(stack, worker, "erin").get("score") == 30.0, what="erin scored 30")
    assert len(list(read_topic(stack.broker_url, worker.topics.repartition, 0.5))) >= 2
