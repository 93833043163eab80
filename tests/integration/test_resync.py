"""``tierstream resync`` against a running worker: the read model comes back from worker state.

A worker processes events; the test deletes the worker's Redis keys (its own prefix only), runs
``python -m tierstream resync`` with the worker's environment, and checks the records are back identical
(except ``updated_at``, which is the resync's time), that a second run while the worker still runs changes
nothing, and that ``--ledger`` rebuilds the tier ledger from the tier-changes topic.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis

from schemas.outputs import TierChangeEvent
from tierstream.kafka_io import ensure_topics, producer, read_topic
from tierstream.readmodel import ReadModelReader

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
CUSTOMERS = {"rs-a": ("6000000", 3), "rs-b": ("200000", 4), "rs-c": ("100", 1)}  # amount per order, orders


def snapshot(url: str, prefix: str) -> dict[tuple[str, str], dict]:
    async def main() -> dict[tuple[str, str], dict]:
        reader = ReadModelReader(url, prefix)
        try:
            found = await reader.get_many(list(CUSTOMERS))
        finally:
            await reader.aclose()
        return {(r.customer_id, r.policy): r.model_dump(mode="json", exclude={"updated_at"})
                for records in found.values() for r in records}

    return asyncio.run(main())


def ledger(url: str, prefix: str, customer: str) -> list[tuple[int, str]]:
    async def main() -> list[tuple[int, str]]:
        reader = ReadModelReader(url, prefix)
        try:
            return [(e.sequence, e.to_tier) for e in await reader.history(customer)]
        finally:
            await reader.aclose()

    return asyncio.run(main())


def run_resync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierstream", "resync", "--idle-seconds", "1", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_resync_rebuilds_the_read_model_while_the_worker_runs(stack, make_worker) -> None:
    w = make_worker()
    ensure_topics(stack.broker_url, [*w.topics.all_consumed(), *w.topics.all_produced()], 4)
    w.start()
    prefix = w.env["TIERSTREAM_REDIS_PREFIX"]
    prod = producer(stack.broker_url)
    for customer, (amount, orders) in CUSTOMERS.items():
        for i in range(orders):
            prod.send(w.topics.input("order"), key=customer.encode(), value=orjson.dumps({
                "event_id": f"{customer}-{i}", "customer_id": customer, "type": "order",
                "order_id": f"o-{customer}-{i}", "status": "placed", "amount": amount,
                "occurred_at": (NOW - timedelta(days=5 + 10 * i)).isoformat()}))
    prod.flush()
    prod.close()

    deadline = time.monotonic() + 30
    before: dict = {}
    while time.monotonic() < deadline:
        before = snapshot(stack.redis_url, prefix)
        if len(before) == len(CUSTOMERS) and all(r["version"] >= 1 for r in before.values()):
            time.sleep(1.0)  # let the batches settle: compare against the final records
            if snapshot(stack.redis_url, prefix) == before:
                break
        time.sleep(0.3)
    assert len(before) == len(CUSTOMERS), before

    client = redis.Redis.from_url(stack.redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    assert keys
    client.delete(*keys)
    assert snapshot(stack.redis_url, prefix) == {}

    done = run_resync(w.env)
    assert done.returncode == 0, done.stderr
    assert f"resync: {len(CUSTOMERS)} customers, {len(before)} records: {len(before)} written" in done.stdout
    assert "writing records [######" in done.stderr  # the progress bar
    after = snapshot(stack.redis_url, prefix)
    assert after == before  # tier, score, version, since, scored tier, override, routing: identical
    counts = {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}counts:five_tier").items()}
    assert sum(counts.values()) == len(CUSTOMERS)

    # Again, while the worker runs: nothing is older in Redis, so nothing is written; --ledger rebuilds the
    # ledger from the tier-changes topic.
    again = run_resync(w.env, "--ledger")
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} records: 0 written, {len(before)} already current" in again.stdout
    assert snapshot(stack.redis_url, prefix) == before
    changes = [TierChangeEvent.model_validate_json(v)
               for _, v, _ in read_topic(stack.broker_url, w.topics.tier_changes, timeout=0.5)]
    for customer in CUSTOMERS:
        mine = sorted(((c.sequence, c.to_tier) for c in changes if c.customer_id == customer), reverse=True)
        assert mine and ledger(stack.redis_url, prefix, customer) == mine
    client.close()
