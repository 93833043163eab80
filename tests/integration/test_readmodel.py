"""Read model against real Redis: version guard, idempotent replays, tier counts, outages, resync.

Shared Redis (127.0.0.1:6379) tests use a unique key prefix and delete only their own keys. Outage tests
start their own ``redis-server`` on a free port (no persistence, like production's cache Redis) and kill it.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from schemas.readmodel import TierRecord
from streams.metrics import REDIS_PENDING, REDIS_WRITE_FAILURES
from tierstream.readmodel import ReadModelReader, ReadModelWriter
from tierstream.readmodel.writer import RecordWrite

pytestmark = pytest.mark.integration

SHARED_URL = "redis://127.0.0.1:6379/0"
TIERS = ("diamond", "platinum", "gold", "silver", "bronze")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def rec(customer: str, version: int, tier: str, policy: str = "five_tier") -> TierRecord:
    """A record whose fields all derive from (customer, version, tier), so equality checks are exact."""
    return TierRecord(
        customer_id=customer,
        policy=policy,
        policy_version=1,
        tier=tier,
        score=float(version),
        since=T0 + timedelta(minutes=version),
        override=None,
        version=version,
        updated_at=T0 + timedelta(minutes=version),
        routing={
            "queue": f"q-{tier}",
            "priority": TIERS.index(tier) if tier in TIERS else 9,
            "response_time_target_seconds": 60.0,
        },
    )


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique prefix on the shared Redis; its keys are deleted afterwards (never FLUSHALL)."""
    p = f"test:{uuid.uuid4().hex}:"
    yield p

    async def cleanup() -> None:
        client = Redis.from_url(SHARED_URL)
        keys = [k async for k in client.scan_iter(f"{p}*", count=10000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(cleanup())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """A private redis-server (no persistence) that a test may stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # a crash, not a clean shutdown: the data are gone (no persistence)
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


async def stored(url: str, prefix: str, customers: list[str], policy: str = "five_tier") -> dict[str, TierRecord]:
    reader = ReadModelReader(url, prefix)
    try:
        found = await reader.get_many(customers, policy)
    finally:
        await reader.aclose()
    return {c: recs[0] for c, recs in found.items()}


async def counts(url: str, prefix: str, policy: str = "five_tier") -> dict[str, int]:
    reader = ReadModelReader(url, prefix)
    try:
        return await reader.counts(policy)
    finally:
        await reader.aclose()


def newest(history: list[TierRecord]) -> dict[str, TierRecord]:
    best: dict[str, TierRecord] = {}
    for r in history:
        if r.customer_id not in best or r.version > best[r.customer_id].version:
            best[r.customer_id] = r
    return best


# ---------------------------------------------------------------------------------------- version guard


def test_out_of_order_writes_keep_newest(prefix: str) -> None:
    async def main() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        versions = [rec("c1", v, TIERS[v % 5]) for v in range(1, 21)]
        random.Random(1).shuffle(versions)
        for i in range(0, 20, 3):  # several batches, each out of order
            await writer.write(versions[i : i + 3])
        got = await stored(SHARED_URL, prefix, ["c1"])
        assert got["c1"] == rec("c1", 20, TIERS[0])
        # An old version written after the newest never wins, even alone in its batch.
        await writer.write([rec("c1", 5, "bronze")])
        assert (await stored(SHARED_URL, prefix, ["c1"]))["c1"].version == 20
        assert await counts(SHARED_URL, prefix) == {TIERS[0]: 1}
        await writer.stop()

    asyncio.run(main())


def test_replays_are_idempotent(prefix: str) -> None:
    async def main() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        batch = [rec(f"c{i}", 3, TIERS[i % 5]) for i in range(50)]
        for _ in range(3):
            await writer.write(batch)
        got = await stored(SHARED_URL, prefix, [f"c{i}" for i in range(50)])
        assert got == {r.customer_id: r for r in batch}
        assert await counts(SHARED_URL, prefix) == dict(Counter(r.tier for r in batch))
        await writer.stop()

    asyncio.run(main())


def test_counts_follow_tier_moves_with_replays_and_disorder(prefix: str) -> None:
    async def main() -> None:
        rng = random.Random(7)
        history = [rec(f"c{c}", v, rng.choice(TIERS)) for c in range(200) for v in range(1, 6)]
        stream = history + rng.sample(history, 300)  # replays of random older records
        rng.shuffle(stream)
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        for i in range(0, len(stream), 97):
            await writer.write(stream[i : i + 97])
        final = newest(history)
        got = await stored(SHARED_URL, prefix, list(final))
        assert got == final
        assert await counts(SHARED_URL, prefix) == dict(Counter(r.tier for r in final.values()))
        await writer.stop()

    asyncio.run(main())


def test_two_writers_during_rebalance_never_regress(prefix: str) -> None:
    """Two workers own the same customers for a moment and write interleaved versions concurrently."""

    async def main() -> None:
        rng = random.Random(3)
        history = [rec(f"c{c}", v, rng.choice(TIERS)) for c in range(100) for v in range(1, 11)]
        a, b = ReadModelWriter(SHARED_URL, prefix), ReadModelWriter(SHARED_URL, prefix)
        await a.start()
        await b.start()
        left, right = history[:], history[:]
        rng.shuffle(left)
        rng.shuffle(right)

        async def feed(writer: ReadModelWriter, records: list[TierRecord]) -> None:
            for i in range(0, len(records), 25):
                await writer.write(records[i : i + 25])
                await asyncio.sleep(0)

        await asyncio.gather(feed(a, left), feed(b, right))
        final = newest(history)
        assert await stored(SHARED_URL, prefix, list(final)) == final
        assert await counts(SHARED_URL, prefix) == dict(Counter(r.tier for r in final.values()))
        await a.stop()
        await b.stop()

    asyncio.run(main())


def test_several_policies_are_independent(prefix: str) -> None:
    async def main() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        await writer.write([rec("c1", 2, "gold", "five_tier"), rec("c1", 2, "A", "sabcd")])
        await writer.write([rec("c1", 3, "S", "sabcd")])
        reader = ReadModelReader(SHARED_URL, prefix)
        got = await reader.get("c1")
        assert [(r.policy, r.tier, r.version) for r in got] == [("five_tier", "gold", 2), ("sabcd", "S", 3)]
        assert await reader.counts("sabcd") == {"S": 1}
        assert await reader.counts("five_tier") == {"gold": 1}
        assert await reader.get("c1", "nope") == []
        assert await reader.get("unknown") == []
        assert (await reader.last_write_at() or 0) > time.time() - 60
        await reader.aclose()
        await writer.stop()

    asyncio.run(main())


def test_one_call_per_customer_applies_each_record_in_order(prefix: str) -> None:
    """The upsert script takes all of a customer's records in one call (one per policy, or several of one
    policy, as a replay after a restart can give): each is guarded on its own, in order, and the counts
    follow every move (hand-computed)."""
    async def main() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        stored_n, retry = await writer._send_counted([RecordWrite.of(r) for r in (
            rec("c1", 1, "silver", "five_tier"), rec("c1", 2, "gold", "five_tier"),  # two steps, one call
            rec("c1", 1, "B", "sabcd"), rec("c2", 1, "gold", "five_tier"),
            rec("c1", 2, "gold", "five_tier"),  # a replay of version 2: refused
        )])
        assert (stored_n, retry) == (4, [])
        stored_n, _ = await writer._send_counted([RecordWrite.of(rec("c1", 1, "bronze", "five_tier")),
                                                  RecordWrite.of(rec("c1", 3, "A", "sabcd"))])
        assert stored_n == 1  # version 1 of five_tier is older than the stored 2
        reader = ReadModelReader(SHARED_URL, prefix)
        got = {r.policy: (r.tier, r.version) for r in await reader.get("c1")}
        assert got == {"five_tier": ("gold", 2), "sabcd": ("A", 3)}
        assert await reader.counts("five_tier") == {"gold": 2}  # c1 silver -> gold, c2 gold
        assert await reader.counts("sabcd") == {"A": 1}
        await reader.aclose()
        await writer.stop()

    asyncio.run(main())


def test_customers_share_script_calls_and_a_bad_key_loses_only_its_customer(prefix: str) -> None:
    """Records of up to CUSTOMERS_PER_CALL customers go in one script call. A customer whose tier key
    holds another type (WRONGTYPE) makes its call fail after storing the customers before it; the writer
    then sends that call's customers one per call, so every other customer is stored and counted once."""
    from tierstream.readmodel.writer import CUSTOMERS_PER_CALL

    async def main() -> None:
        n = CUSTOMERS_PER_CALL + 50  # two calls
        bad = f"c{CUSTOMERS_PER_CALL // 2}"  # in the middle of the first call
        admin = Redis.from_url(SHARED_URL)
        await admin.set(f"{prefix}tier:{bad}", "not a hash")
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        failures = REDIS_WRITE_FAILURES._value.get()
        records = [rec(f"c{i}", 1, "gold" if i % 2 else "silver") for i in range(n)]
        stored_n, retry = await writer._send_counted([RecordWrite.of(r) for r in records])
        assert retry == []
        assert REDIS_WRITE_FAILURES._value.get() == failures + 1
        good = [f"c{i}" for i in range(n) if f"c{i}" != bad]
        got = await stored(SHARED_URL, prefix, good)
        assert sorted(got) == sorted(good)
        assert all(got[f"c{i}"].tier == ("gold" if i % 2 else "silver") for i in range(n) if f"c{i}" != bad)
        # hand-computed: 150 customers, odd ones gold; c50 (silver) refused
        assert await counts(SHARED_URL, prefix) == {"gold": 75, "silver": 74}
        # the customers after the bad one in its call (49 of them) and the second call (50) were stored by
        # this attempt; the 50 before it were stored by the failed call and are not counted
        assert stored_n == n - 1 - CUSTOMERS_PER_CALL // 2
        await admin.aclose()
        await writer.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------- outages


def test_noscript_fallback_after_script_flush(private_redis: RedisProcess) -> None:
    async def main() -> None:
        writer = ReadModelWriter(private_redis.url, "t:")
        await writer.start()
        admin = Redis.from_url(private_redis.url)
        await admin.script_flush()  # like a Redis restart: the script cache is empty
        await writer.write([rec("c1", 1, "gold")])
        assert writer.pending == 0
        assert (await stored(private_redis.url, "t:", ["c1"]))["c1"].tier == "gold"
        await admin.aclose()
        await writer.stop()

    asyncio.run(main())


def test_outage_keeps_going_and_converges_to_table_state(private_redis: RedisProcess) -> None:
    """Stop Redis, keep the stream going, start it (empty): Redis converges to the worker's table state."""
    table: dict[str, TierRecord] = {}  # stands for the worker's state table: newest record per customer

    def apply(records: list[TierRecord]) -> list[TierRecord]:
        for r in records:
            if r.customer_id not in table or r.version > table[r.customer_id].version:
                table[r.customer_id] = r
        return records

    async def main() -> None:
        rng = random.Random(11)
        writer = ReadModelWriter(
            private_redis.url,
            "t:",
            resync_source=lambda: list(table.values()),
            retry_base_seconds=0.02,
            retry_max_seconds=0.2,
            socket_timeout_seconds=0.5,
        )
        await writer.start()
        customers = [f"c{i}" for i in range(300)]
        version = 1
        await writer.write(apply([rec(c, version, rng.choice(TIERS)) for c in customers]))
        assert writer.pending == 0
        failures_before = REDIS_WRITE_FAILURES._value.get()

        private_redis.stop()
        # The stream goes on: tier moves for a third of the customers, never blocking, never raising.
        for _ in range(5):
            version += 1
            moved = rng.sample(customers, 100)
            started = time.perf_counter()
            await writer.write(apply([rec(c, version, rng.choice(TIERS)) for c in moved]))
            assert time.perf_counter() - started < 1.0
            await asyncio.sleep(0.05)
        assert writer.pending > 0
        assert REDIS_PENDING._value.get() == writer.pending
        assert REDIS_WRITE_FAILURES._value.get() > failures_before

        private_redis.start()  # same port, empty: the pre-outage data are gone
        # More updates arrive while the writer recovers.
        version += 1
        await writer.write(apply([rec(c, version, rng.choice(TIERS)) for c in rng.sample(customers, 50)]))

        seen: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while True:
            got = await stored(private_redis.url, "t:", customers)
            for c, r in got.items():  # no read ever goes back in time while converging
                assert r.version >= seen.get(c, 0)
                seen[c] = r.version
            if got == table and writer.pending == 0:
                break
            assert time.monotonic() < deadline, f"not converged: {len(got)} of {len(table)}"
            await asyncio.sleep(0.05)
        assert await counts(private_redis.url, "t:") == dict(Counter(r.tier for r in table.values()))
        assert REDIS_PENDING._value.get() == 0
        await writer.stop()

    asyncio.run(main())


def test_unnoticed_restart_between_batches_triggers_resync(private_redis: RedisProcess) -> None:
    """Redis restarts while the worker is idle: the next write fails, and recovery rebuilds everything."""
    table = {f"c{i}": rec(f"c{i}", 1, TIERS[i % 5]) for i in range(100)}

    async def main() -> None:
        writer = ReadModelWriter(
            private_redis.url, "t:", resync_source=lambda: list(table.values()), retry_base_seconds=0.02
        )
        await writer.start()
        await writer.write(list(table.values()))
        private_redis.stop()
        private_redis.start()
        table["c0"] = rec("c0", 2, "diamond")
        await writer.write([table["c0"]])
        deadline = time.monotonic() + 10
        while await stored(private_redis.url, "t:", list(table)) != table:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await writer.stop()

    asyncio.run(main())


def test_redis_down_at_start_then_up(private_redis: RedisProcess) -> None:
    async def main() -> None:
        private_redis.stop()
        writer = ReadModelWriter(private_redis.url, "t:", retry_base_seconds=0.02, retry_max_seconds=0.1)
        await writer.start()  # must not raise
        await writer.write([rec("c1", 1, "gold"), rec("c1", 2, "silver"), rec("c2", 1, "bronze")])
        assert writer.pending == 2  # newest per key only
        private_redis.start()
        deadline = time.monotonic() + 10
        while writer.pending:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        got = await stored(private_redis.url, "t:", ["c1", "c2"])
        assert got["c1"].version == 2 and got["c2"].version == 1
        await writer.stop()

    asyncio.run(main())


def test_worker_started_while_redis_down_resyncs_when_it_comes_up(private_redis: RedisProcess) -> None:
    """No write at all during the outage: recovery alone brings Redis to the table state."""
    table = {f"c{i}": rec(f"c{i}", 3, TIERS[i % 5]) for i in range(50)}

    async def main() -> None:
        private_redis.stop()
        writer = ReadModelWriter(
            private_redis.url,
            "t:",
            resync_source=lambda: list(table.values()),
            retry_base_seconds=0.02,
            retry_max_seconds=0.1,
        )
        await writer.start()
        await asyncio.sleep(0.2)
        private_redis.start()
        deadline = time.monotonic() + 10
        while await stored(private_redis.url, "t:", list(table)) != table:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await writer.stop()

    asyncio.run(main())


def test_stop_flushes_pending_best_effort(private_redis: RedisProcess) -> None:
    async def main() -> None:
        writer = ReadModelWriter(private_redis.url, "t:", retry_base_seconds=5, retry_max_seconds=5)
        await writer.start()
        private_redis.stop()
        await writer.write([rec("c1", 1, "gold")])
        assert writer.pending == 1
        private_redis.start()
        await writer.stop()  # the retry task would wait ~5 s; stop flushes now
        assert (await stored(private_redis.url, "t:", ["c1"]))["c1"].tier == "gold"

    asyncio.run(main())


def test_max_pending_overflow_flags_resync(private_redis: RedisProcess) -> None:
    async def main() -> None:
        writer = ReadModelWriter(private_redis.url, "t:", max_pending=3, retry_base_seconds=5)
        await writer.start()
        private_redis.stop()
        await writer.write([rec(f"c{i}", 1, "gold") for i in range(5)])
        assert writer.pending == 3 and writer.overflowed
        await writer.write([rec("c0", 2, "silver")])  # newer versions of held keys still replace
        assert writer.pending == 3
        await writer.stop(flush_timeout_seconds=0.5)

    asyncio.run(main())


# ---------------------------------------------------------------------------------------- resync


def test_resync_rebuilds_and_never_regresses(prefix: str) -> None:
    async def main() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix, batch_size=500)
        await writer.start()
        state = [rec(f"c{i}", 5, TIERS[i % 5]) for i in range(1200)]

        async def source() -> AsyncIterator[TierRecord]:
            for r in state:
                yield r

        result = await writer.resync(source())
        assert (result.total, result.applied, result.skipped) == (1200, 1200, 0)
        again = await writer.resync(state)  # sync iterable, idempotent
        assert (again.applied, again.skipped) == (0, 1200)
        await writer.write([rec("c1", 9, "diamond")])  # Redis ahead of a stale snapshot
        stale = await writer.resync([rec("c1", 5, TIERS[1])])
        assert stale.applied == 0
        got = await stored(SHARED_URL, prefix, [r.customer_id for r in state])
        assert len(got) == 1200 and got["c1"].version == 9
        expected = Counter(r.tier for r in state)
        expected[TIERS[1]] -= 1
        expected["diamond"] += 1
        assert await counts(SHARED_URL, prefix) == {t: n for t, n in expected.items() if n}
        await writer.stop()

    asyncio.run(main())


def test_resync_raises_when_redis_is_down(private_redis: RedisProcess) -> None:
    async def main() -> None:
        writer = ReadModelWriter(private_redis.url, "t:", socket_timeout_seconds=0.5)
        await writer.start()
        private_redis.stop()
        with pytest.raises(Exception):  # noqa: B017 - any Redis/OS connection error
            await writer.resync([rec("c1", 1, "gold")])
        await writer.stop(flush_timeout_seconds=0.2)

    asyncio.run(main())


def test_the_writers_pipeline_keeps_replies_in_order_and_its_connection_in_step(prefix: str) -> None:
    """ReadModelWriter._pipeline (session 13: commands packed by the writer, not redis-py's pipeline): one
    write, one reply per command in order, an error reply standing as its exception (NOSCRIPT as
    NoScriptError, which the writer reloads on), and the pooled connection still in step afterwards."""
    from redis.exceptions import NoScriptError, ResponseError

    from tierstream.readmodel.writer import pack_command

    async def main() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix)
        try:
            replies = await writer._pipeline([
                pack_command("SET", f"{prefix}a", "1"),
                pack_command("LPUSH", f"{prefix}list", "x"),
                pack_command("INCR", f"{prefix}list"),  # WRONGTYPE
                pack_command("EVALSHA", "0" * 40, 0),  # no such script
                pack_command("GET", f"{prefix}a"),
            ])
            assert replies[:2] == [b"OK", 1]  # raw replies: EVALSHA, the one command the writer sends, has no callback
            assert isinstance(replies[2], ResponseError) and "WRONGTYPE" in str(replies[2])
            assert isinstance(replies[3], NoScriptError)
            assert replies[4] == b"1"
            assert await writer._pipeline([]) == []
            assert await writer._pipeline([pack_command("INCR", f"{prefix}a")]) == [2]  # in step
        finally:
            await writer.stop()

    asyncio.run(main())
