"""Policy rollout in the worker (issue 5): a new policy version re-scores every stored customer with cause
``policy_change``, rate-limited; the guard refuses it when too many customers would change tier, unless
forced; a completed rollout is not repeated by the next worker.

Hand computation. Policy ``rollout_demo`` scores ``orders_lifetime``: v1 gold from 3 orders, v2 gold from
5 (no lifecycle: changes take effect at once). Customers r00..r39, customer i has ``i % 8`` orders and one
login. Under v1: i % 8 in 3..7 -> gold (25 customers), else bronze (15). Under v2: i % 8 in 5..7 -> gold.
So v2 moves exactly the 10 customers with i % 8 in {3, 4} from gold to bronze: 10 of 40 = 25 %.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from tests.integration.test_pipeline import scrape, wait_for
from tierstream.embedded import start_worker
from tierstream.kafka_io import ensure_topics, producer, read_topic

pytestmark = pytest.mark.integration

CUSTOMERS = [f"r{i:02d}" for i in range(40)]
MOVERS = {c for i, c in enumerate(CUSTOMERS) if i % 8 in (3, 4)}
RATE, BURST = 4.0, 2


def write_policy(path: Path, version: int, gold_from: int) -> str:
    path.write_text(f"""\
id: rollout_demo
version: {version}
tiers: [gold, bronze]
score: {{feature: orders_lifetime}}
tier:
  bands:
    bands:
      - {{tier: gold, ge: {gold_from}}}
    default: bronze
""")
    return str(path)


def readiness(worker) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/readyz", timeout=2) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())
    except OSError:
        return 0, {}


def records(stack, worker) -> dict[str, dict]:
    client = redis.Redis.from_url(stack.redis_url)
    prefix = worker.env["TIERSTREAM_REDIS_PREFIX"]
    out = {}
    for cid in CUSTOMERS:
        raw = client.hget(f"{prefix}tier:{cid}", "rollout_demo")
        if raw is not None:
            out[cid] = orjson.loads(raw)
    return out


def policy_changes(stack, worker) -> list[dict]:
    found = [orjson.loads(v) for _, v, _ in read_topic(stack.broker_url, worker.topics.tier_changes, 0.5)]
    return [c for c in found if c["cause"] == "policy_change"]


def test_new_version_is_guarded_then_rolled_out_rate_limited_once(stack, make_worker, tmp_path):
    v1 = write_policy(tmp_path / "v1.yaml", 1, 3)
    v2 = write_policy(tmp_path / "v2.yaml", 2, 5)
    a = make_worker(policies=v1)
    same = {"topic_prefix": a.topics.prefix, "app_id": a.env["TIERSTREAM_APP_ID"]}
    ensure_topics(stack.broker_url, [*a.topics.all_consumed(), *a.topics.all_produced()], 4)
    a.start()
    prod = producer(stack.broker_url)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)

    def send(event: dict) -> None:
        prod.send(a.topics.input(event["type"]), key=event["customer_id"].encode(), value=orjson.dumps(event))

    for i, cid in enumerate(CUSTOMERS):
        send({"event_id": f"{cid}-l", "customer_id": cid, "occurred_at": t0.isoformat(), "type": "login"})
        for k in range(i % 8):
            send({"event_id": f"{cid}-o{k}", "customer_id": cid, "type": "order", "order_id": f"{cid}-{k}",
                  "occurred_at": (t0 + timedelta(hours=k + 1)).isoformat(), "status": "placed", "amount": "10"})
    prod.flush()
    wait_for(lambda: len(records(stack, a)) == len(CUSTOMERS), timeout=60, what="v1 tiers of every customer")
    v1_tiers = {c: r["tier"] for c, r in records(stack, a).items()}
    assert {c for c, t in v1_tiers.items() if t == "gold"} == {c for i, c in enumerate(CUSTOMERS) if i % 8 >= 3}
    a.stop()

    # --- guard: 25 % would change, the limit is 20 %: refused, nothing decided, nothing consumed
    b = make_worker(policies=v2, rollout_max_share="0.2", data_dir=str(tmp_path / "state-b"), **same)
    b.proc = start_worker(b.env, b.log_path)
    b.history.append(b.proc)
    _, body = wait_for(lambda: (r := readiness(b))[0] == 503 and "rollout_refused" in r[1] and r,
                       timeout=60, what="rollout refused on /readyz")
    reason = body["rollout_refused"]["rollout_demo"]
    assert "10 of 40 customers (25.0%)" in reason and "refusing" in reason, reason
    assert scrape(b, 'tierstream_rollout_blocked{policy="rollout_demo",version="2"}') == 1.0
    assert scrape(b, "tierstream_worker_ready") == 0.0
    # an event arriving meanwhile waits (it is not lost: its offset is not committed)
    send({"event_id": "r01-late", "customer_id": "r01", "occurred_at": (t0 + timedelta(days=1)).isoformat(),
          "type": "login"})
    prod.flush()
    time.sleep(3.0)
    assert scrape(b, "tierstream_events_consumed_total") == 0.0
    assert policy_changes(stack, b) == []
    assert {c: r["policy_version"] for c, r in records(stack, b).items()} == dict.fromkeys(CUSTOMERS, 1)
    b.stop()

    # --- forced: every customer re-scored with cause policy_change, at most BURST + RATE per second
    c = make_worker(policies=v2, rollout_max_share="0.2", rollout_force="true", rollout_rate=str(RATE),
                    rollout_burst=str(BURST), data_dir=str(tmp_path / "state-c"), **same)
    started = time.monotonic()
    c.start()
    samples: list[tuple[float, float]] = []
    while True:  # until ~all are re-scored (r01's event may have done r01 first) and the queue is empty
        queue = scrape(c, "tierstream_rollout_queue_customers")
        samples.append((time.monotonic() - started, scrape(c, "tierstream_rollout_rescored_total")))
        if samples[-1][1] >= len(CUSTOMERS) - 1 and queue == 0:
            break
        assert time.monotonic() - started < 90, f"rollout did not finish: {samples[-1]}\n{c.log()[-3000:]}"
        time.sleep(0.5)
    for elapsed, rescored in samples:  # the token bucket: never faster than BURST + RATE * t
        assert rescored <= BURST + RATE * elapsed + 1, (elapsed, rescored)
    assert samples[-1][0] >= (len(CUSTOMERS) - 1 - BURST) / RATE - 1  # ~39 re-scores (r01 had an event)
    changes = policy_changes(stack, c)
    assert sorted(ch["customer_id"] for ch in changes) == sorted(MOVERS)
    assert {(ch["from"], ch["to"], ch["direction"], ch["policy_version"], ch["event_id"]) for ch in changes} == {
        ("gold", "bronze", "down", 2, None)}
    final = records(stack, c)
    assert {cid: r["policy_version"] for cid, r in final.items()} == dict.fromkeys(CUSTOMERS, 2)
    assert {cid: r["tier"] for cid, r in final.items()} == {
        cid: ("bronze" if cid in MOVERS else t) for cid, t in v1_tiers.items()}
    # the event that waited during the refusal is applied now
    try:
        wait_for(lambda: scrape(c, "tierstream_events_consumed_total") >= 1.0, timeout=30, what="r01's event")
    except AssertionError:
        print(b.log()[-4000:], "\n=====\n", c.log()[-6000:])
        raise
    c.stop()

    # --- a later worker (fresh state directory: markers restored from the changelog) does not repeat it
    d = make_worker(policies=v2, rollout_max_share="0.2", data_dir=str(tmp_path / "state-d"), **same)
    d.start()
    time.sleep(2.0)
    assert readiness(d)[0] == 200
    assert scrape(d, "tierstream_rollout_rescored_total") == 0.0
    assert len(policy_changes(stack, d)) == len(MOVERS)
