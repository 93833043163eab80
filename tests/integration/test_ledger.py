"""Tier ledger of the read model against real Redis: idempotent, bounded, "tier as of T", outages.

Shared Redis tests use a unique key prefix and delete only their own keys (fixture ``prefix`` of
test_readmodel); outage tests use a private ``redis-server`` they kill and restart.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from redis.asyncio import Redis

from schemas.outputs import TierChangeEvent, change_id
from schemas.readmodel import TierRecord
from streams.metrics import REDIS_WRITE_FAILURES
from tests.integration.test_readmodel import SHARED_URL, RedisProcess, prefix, private_redis, rec
from tierstream.readmodel import ReadModelReader, ReadModelWriter
from tierstream.readmodel.keys import LEDGER_MAX, Keys
from tierstream.readmodel.writer import CUSTOMERS_PER_CALL, LedgerWrite

pytestmark = pytest.mark.integration
__all__ = ["prefix", "private_redis"]  # fixtures imported for pytest

T0 = datetime(2025, 1, 1, tzinfo=UTC)
LADDER = ("bronze", "silver", "gold", "platinum", "diamond")


def change(customer: str, seq: int, policy: str = "five_tier", at: datetime | None = None) -> TierChangeEvent:
    """The ``seq``-th change of ``customer``: climbs the ladder and wraps; effective one day apart."""
    to = LADDER[(seq - 1) % len(LADDER)]
    frm = None if seq == 1 else LADDER[(seq - 2) % len(LADDER)]
    return TierChangeEvent(
        change_id=change_id(customer, policy, 1, seq, to), customer_id=customer, policy=policy, policy_version=1,
        from_tier=frm, to_tier=to, direction="new" if frm is None else "up", cause="event", score=float(seq),
        sequence=seq, event_id=f"e{seq}", effective_at=at or T0 + timedelta(days=seq), decided_at=T0,
        explanation={"score": seq},
    )


async def zcard(url: str, key: str) -> int:
    client = Redis.from_url(url)
    try:
        return int(await client.zcard(key))
    finally:
        await client.aclose()


async def open_pair(url: str, prefix: str, **kwargs) -> tuple[ReadModelWriter, ReadModelReader]:
    writer = ReadModelWriter(url, prefix, **kwargs)
    await writer.start()
    return writer, ReadModelReader(url, prefix)


def test_ledger_is_idempotent(prefix: str) -> None:
    async def main() -> None:
        writer, reader = await open_pair(SHARED_URL, prefix)
        changes = [change("c1", s) for s in (1, 2, 3)]
        await writer.write_changes(changes)
        first = await reader.history("c1")
        # Re-delivery: the same decisions, parsed back from the topic's JSON (another tzinfo object, another
        # decided_at and explanation), repeated inside a batch and across batches.
        redelivered = [
            TierChangeEvent.model_validate_json(
                orjson.dumps(c.model_dump(mode="json", by_alias=True) | {
                    "decided_at": "2030-01-01T00:00:00Z", "explanation": {},
                    "effective_at": c.effective_at.isoformat().replace("+00:00", "Z")})
            )
            for c in changes
        ]
        await writer.write_changes([*redelivered, *redelivered])
        await writer.write_changes(changes[:1])
        assert await reader.history("c1") == first
        assert await zcard(SHARED_URL, Keys(prefix).ledger("c1", "five_tier")) == 3
        assert [(e.sequence, e.from_tier, e.to_tier, e.event_id) for e in first] == [
            (3, "silver", "gold", "e3"), (2, "bronze", "silver", "e2"), (1, None, "bronze", "e1")]
        assert first[0].change_id == changes[2].change_id and first[0].policy == "five_tier"
        assert writer.pending == 0
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


def test_ledger_of_several_policies_in_one_call_and_after_a_script_flush(private_redis: RedisProcess) -> None:
    """The ledger script takes a customer's entries of every policy in one call; after the script cache is
    emptied (a Redis restart) the writer reloads it and nothing is left pending."""
    async def main() -> None:
        writer, reader = await open_pair(private_redis.url, "t:")
        admin = Redis.from_url(private_redis.url)
        await admin.script_flush()
        await writer.write_changes([change("c1", 1), change("c1", 1, "sabcd"), change("c1", 2), change("c2", 1)])
        assert writer.pending == 0
        got = [(e.policy, e.sequence) for e in await reader.history("c1")]
        assert sorted(got) == [("five_tier", 1), ("five_tier", 2), ("sabcd", 1)]
        assert [e.sequence for e in await reader.history("c2")] == [1]
        await admin.aclose()
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


def test_customers_share_ledger_calls_and_a_bad_key_loses_only_its_customer(prefix: str) -> None:
    """Ledger entries of up to CUSTOMERS_PER_CALL customers go in one script call (session 21: one call per
    customer cost ~3 times the client CPU per entry). A customer whose ledger key holds another type (WRONGTYPE)
    makes its call fail after adding the entries of the customers before it; the writer then sends that call's
    customers one per call, so every other customer's entries are stored, and counted once."""
    async def main() -> None:
        n = CUSTOMERS_PER_CALL + 50  # two calls
        bad = f"c{CUSTOMERS_PER_CALL // 2}"  # in the middle of the first call
        keys = Keys(prefix)
        admin = Redis.from_url(SHARED_URL)
        await admin.set(keys.ledger(bad, "five_tier"), "not a sorted set")
        writer, reader = await open_pair(SHARED_URL, prefix)
        failures = REDIS_WRITE_FAILURES._value.get()
        # two changes of five_tier for each customer, and one of sabcd for every third
        changes = [c for i in range(n) for c in (change(f"c{i}", 1), change(f"c{i}", 2),
                                                 *([change(f"c{i}", 1, "sabcd")] if i % 3 == 0 else []))]
        sizes: list[int] = []  # commands per pipeline
        send = writer._pipeline

        async def counted(commands: list[bytes]) -> list[object]:
            sizes.append(len(commands))
            return await send(commands)

        writer._pipeline = counted  # type: ignore[method-assign]
        added, retry = await writer._send_changes_counted([LedgerWrite.of(c) for c in changes])
        assert retry == []
        assert REDIS_WRITE_FAILURES._value.get() == failures + 1
        # the 150 customers in two calls; then the failed call's 100 customers again, one per call
        assert sizes == [2, CUSTOMERS_PER_CALL]
        for i in range(n):
            if f"c{i}" != bad:
                got = sorted((e.policy, e.sequence) for e in await reader.history(f"c{i}"))
                assert got == sorted([("five_tier", 1), ("five_tier", 2), *([("sabcd", 1)] if i % 3 == 0 else [])]), i
        assert await admin.type(keys.ledger(bad, "five_tier")) == b"string"
        # hand-computed: the 50 customers before the bad one were added by the failed call and are not counted;
        # the 49 after it (c51..c99) and the 50 of the second call (c100..c149) are: 2 entries each, plus
        # sabcd for every third (c51, c54, ..., c99: 17; c102, ..., c147: 16)
        assert added == 49 * 2 + 17 + 50 * 2 + 16
        await admin.aclose()
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


def test_ledger_is_bounded_to_the_newest(prefix: str) -> None:
    async def main() -> None:
        writer, reader = await open_pair(SHARED_URL, prefix)
        n = LEDGER_MAX + 50
        # Out of order and in uneven batches: trimming keeps the newest by effective_at whatever the order.
        order = list(range(n, 0, -1))
        for i in range(0, n, 37):
            await writer.write_changes([change("c1", s) for s in order[i:i + 37]])
        assert await zcard(SHARED_URL, Keys(prefix).ledger("c1", "five_tier")) == LEDGER_MAX
        history = await reader.history("c1")
        assert [e.sequence for e in history] == list(range(n, n - LEDGER_MAX, -1))
        # Replaying a trimmed (old) change does not bring it back: it is the lowest score, trimmed again.
        await writer.write_changes([change("c1", 1)])
        assert await zcard(SHARED_URL, Keys(prefix).ledger("c1", "five_tier")) == LEDGER_MAX
        oldest_kept = T0 + timedelta(days=n - LEDGER_MAX + 1)
        assert await reader.tier_as_of("c1", "five_tier", oldest_kept - timedelta(seconds=1)) is None
        assert await reader.tier_as_of("c1", "five_tier", oldest_kept) == change("c1", n - LEDGER_MAX + 1).to_tier
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


def test_tier_as_of_and_history_filters(prefix: str) -> None:
    async def main() -> None:
        writer, reader = await open_pair(SHARED_URL, prefix)
        same_instant = T0 + timedelta(days=10)
        await writer.write_changes([
            *(change("c1", s) for s in (1, 2, 3)),  # bronze d1, silver d2, gold d3
            change("c1", 4, at=same_instant), change("c1", 5, at=same_instant),  # platinum, diamond at d10
            change("c1", 1, policy="sabcd", at=T0 + timedelta(days=2, hours=12)),
        ])
        tier = reader.tier_as_of
        assert await tier("c1", "five_tier", T0) is None  # before the first change
        assert await tier("c1", "five_tier", T0 + timedelta(days=1)) == "bronze"  # exactly at effective_at
        assert await tier("c1", "five_tier", T0 + timedelta(days=2, hours=23)) == "silver"
        assert await tier("c1", "five_tier", same_instant) == "diamond"  # sequence breaks the tie
        # Any offset: the same instant in +02:00 answers the same.
        plus2 = timezone(timedelta(hours=2))
        assert await tier("c1", "five_tier", (T0 + timedelta(days=2)).astimezone(plus2)) == "silver"
        assert await tier("c1", "sabcd", T0 + timedelta(days=2)) is None
        assert await tier("c1", "sabcd", T0 + timedelta(days=3)) == "bronze"
        assert await tier("c1", "nope", T0 + timedelta(days=3)) is None
        assert await tier("nobody", "five_tier", T0 + timedelta(days=3)) is None

        everything = await reader.history("c1")
        assert [(e.policy, e.sequence) for e in everything] == [
            ("five_tier", 5), ("five_tier", 4), ("five_tier", 3), ("sabcd", 1), ("five_tier", 2), ("five_tier", 1)]
        as_of = T0 + timedelta(days=2, hours=12)
        assert [(e.policy, e.sequence) for e in await reader.history("c1", as_of=as_of)] == [
            ("sabcd", 1), ("five_tier", 2), ("five_tier", 1)]
        assert [e.sequence for e in await reader.history("c1", policy="sabcd")] == [1]
        ledger = await reader.ledger("c1", as_of=T0 + timedelta(days=1, hours=1))
        assert {p: [e.sequence for e in es] for p, es in ledger.items()} == {"five_tier": [1], "sabcd": []}
        assert await reader.ledger("c1", "sabcd", T0) == {"sabcd": []}  # has a ledger, nothing that early
        assert await reader.ledger("c1", "nope") == {}
        assert await reader.ledger("nobody") == {}
        assert await reader.history("nobody") == []
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


def test_corrupt_ledger_member_is_skipped(prefix: str) -> None:
    async def main() -> None:
        writer, reader = await open_pair(SHARED_URL, prefix)
        await writer.write_changes([change("c1", 1)])
        client = Redis.from_url(SHARED_URL)
        await client.zadd(Keys(prefix).ledger("c1", "five_tier"), {b"{not json": 1.0, b'{"x": 1}': 2.0})
        await client.aclose()
        assert [e.sequence for e in await reader.history("c1")] == [1]
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------- outages


def test_outage_buffers_ledger_and_records_then_flushes(private_redis: RedisProcess) -> None:
    """Redis down: write_changes and write never raise nor wait; both drain once Redis is back."""

    async def main() -> None:
        p = "ledger-outage:"
        writer = ReadModelWriter(
            private_redis.url, p, retry_base_seconds=0.01, retry_max_seconds=0.2, socket_timeout_seconds=0.5
        )
        await writer.start()
        reader = ReadModelReader(private_redis.url, p)
        await writer.write_changes([change("c1", 1)])
        private_redis.stop()
        started = time.monotonic()
        await writer.write_changes([change("c1", 2), change("c1", 3)])  # fails: buffered
        await writer.write([rec("c1", 3, "gold")])
        await writer.write_changes([change("c1", 3), change("c2", 1)])  # buffered at once, c1/3 once
        assert time.monotonic() - started < 2.0
        assert writer.pending == 4  # 3 ledger entries + 1 record
        private_redis.start()  # same port, empty: the pre-outage entry is gone (no persistence)
        deadline = time.monotonic() + 15
        while writer.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert writer.pending == 0
        assert [e.sequence for e in await reader.history("c1")] == [3, 2]
        assert [e.sequence for e in await reader.history("c2")] == [1]
        stored: list[TierRecord] = await reader.get("c1")
        assert [(r.tier, r.version) for r in stored] == [("gold", 3)]
        await writer.stop()
        await reader.aclose()

    asyncio.run(main())


def test_stop_flushes_pending_ledger(private_redis: RedisProcess) -> None:
    async def main() -> None:
        p = "ledger-stop:"
        writer = ReadModelWriter(private_redis.url, p, retry_base_seconds=5.0, retry_max_seconds=5.0,
                                 socket_timeout_seconds=0.5)
        await writer.start()
        private_redis.stop()
        await writer.write_changes([change("c1", 1)])
        assert writer.pending == 1
        private_redis.start()
        await writer.stop(flush_timeout_seconds=5)  # the backoff is long: only stop() can have flushed it
        reader = ReadModelReader(private_redis.url, p)
        assert [e.sequence for e in await reader.history("c1")] == [1]
        await reader.aclose()

    asyncio.run(main())
