"""Decay without events: a customer who stops buying drops when their windows slide, with no event of
their own, driven by the partition's event-time clock (other customers' events).

Hand computation with five_tier (see tests/integration/test_pipeline.py for the ladder):
quiet buys 6 x 200,000 on days T0..T0+5 and is assessed growth 10/10 (15 points) and strategic 5/10
(10 points). At T0+5: spend 1.2M (20) + 6 orders last year (15) + 6 active days (6) + < 1 year (2)
+ 25 = 68 -> gold. Then, with no event of quiet's, the windows slide:
- T0+95: no active day left in 90 days: 62, gold;
- T0+365: one year as a customer (5) and the first order leaves the 12-month window (5 orders: 10): 60 —
  below gold's entry (> 60) but five_tier's 2-point band keeps gold while the score is > 58;
- T0+368: 2 orders left in 12 months (5 points): 55 < 58, a downgrade is due. five_tier downgrades one
  step at its quarterly review, so it takes effect at R = the first quarter start after T0+368, with an
  at-risk warning 14 days before; by then all orders left the window: 1.2M (20) + 0 + 0 + 5 + 25 = 50.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from scoring.timers import next_review
from streams.partitioning import partition_for
from tests.integration.test_pipeline import changes_for, redis_tier, wait_for
from tierstream.kafka_io import ensure_topics, producer, read_topic

pytestmark = pytest.mark.integration


def same_partition_as(customer: str, partitions: int = 4) -> str:
    target = partition_for(customer.encode(), partitions)
    return next(f"clock-{i}" for i in range(1000) if partition_for(f"clock-{i}".encode(), partitions) == target)


def test_quiet_customer_decays_by_window_slide(stack, make_worker):
    worker = make_worker()
    ensure_topics(stack.broker_url, [*worker.topics.all_consumed(), *worker.topics.all_produced()], 4)
    worker.start()
    prod = producer(stack.broker_url)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=500)

    def send(event: dict) -> None:
        prod.send(worker.topics.input(event["type"]), key=event["customer_id"].encode(), value=orjson.dumps(event))

    for i in range(6):
        send({"event_id": f"q{i}", "customer_id": "quiet", "occurred_at": (t0 + timedelta(days=i)).isoformat(),
              "type": "order", "order_id": f"o{i}", "status": "placed", "amount": "200000"})
    send({"event_id": "qp", "customer_id": "quiet", "occurred_at": (t0 + timedelta(days=5)).isoformat(),
          "type": "profile", "assessments": {"growth_potential": 10, "strategic_value": 5}})
    prod.flush()
    wait_for(lambda: redis_tier(stack, worker, "quiet").get("score") == 68.0, what="quiet at 68")
    assert redis_tier(stack, worker, "quiet")["tier"] == "gold"

    clock = same_partition_as("quiet")
    send({"event_id": "tick", "customer_id": clock, "occurred_at": (t0 + timedelta(days=499)).isoformat(),
          "type": "login"})
    prod.flush()
    try:
        record = wait_for(lambda: (r := redis_tier(stack, worker, "quiet")) and r["score"] == 50.0 and r,
                          what="quiet decayed to 50")
    except AssertionError:
        print(redis_tier(stack, worker, "quiet"), changes_for(stack, worker, "quiet", want=1, timeout=1))
        print(worker.log()[-3000:])
        raise
    assert record["tier"] == "silver"
    review = next_review(t0 + timedelta(days=368), "quarterly")
    last = changes_for(stack, worker, "quiet", want=2)[-1]
    assert (last["from"], last["to"], last["cause"], last["event_id"]) == ("gold", "silver", "review", None)
    assert datetime.fromisoformat(last["effective_at"]) == review  # at the review, not at the clock's time
    warnings = [orjson.loads(v) for k, v, _ in read_topic(stack.broker_url, worker.topics.tier_at_risk, 1.0)
                if k == b"quiet"]
    assert warnings and datetime.fromisoformat(warnings[0]["scheduled_at"]) == review
    assert datetime.fromisoformat(warnings[0]["warned_at"]) == review - timedelta(days=14)
