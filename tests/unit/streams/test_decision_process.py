"""Batches decided in child processes (streams/decision_process.py): the split, the merge, and the pool.

The claim under test: a batch split by customer, decided in parts and merged, gives the outbox of the
batch decided whole, except for the order between different customers' effects. The split and the merge
are checked in process; the pool with real spawned children (no broker: the children only decide).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections import defaultdict
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import Message

from scoring import accel
from scoring.state import CustomerState
from streams.batch import InRecord, Outbox, encode_change
from streams.decision_process import (
    DecisionPool,
    PreparedRows,
    build_processor,
    fingerprint,
    loader,
    merge,
    split,
    split_rows,
)
from streams.encoded import Encoded, EncodedChange, encode_changes, encode_outputs
from streams.partitioning import partition_for
from streams.topics import Topics
from streams.worker import Worker, read_states, to_record, to_row
from tierstream.readmodel import codec
from tierstream.readmodel.writer import LedgerWrite, RecordWrite
from tierstream.settings import Settings
from tierstream.synth import generate_events

ROOT = Path(__file__).resolve().parents[3]
END = datetime(2026, 1, 1, tzinfo=UTC)
NOW = END + timedelta(hours=1)
SETTINGS = Settings(policies=("five_tier",), partitions=4, topic_prefix="t.")
TOPICS = Topics("t.")


def records(customers: int = 60, days: int = 30) -> list[InRecord]:
    """Synthetic events of ``customers`` as consumed records, plus one malformed and one mis-keyed record."""
    out, offsets = [], [0] * 4
    for event in generate_events(customers, seed=3, start=END - timedelta(days=days), end=END):
        key = event["customer_id"].encode()
        p = partition_for(key, 4)
        out.append(InRecord(TOPICS.input(event["type"]), p, offsets[p], key, orjson.dumps(event), NOW.timestamp()))
        offsets[p] += 1
    out.insert(5, InRecord(TOPICS.input("order"), 0, 10_000, b"c-broken", b"{not json", NOW.timestamp()))
    first = orjson.loads(out[0].value)
    wrong = next(p for p in range(4) if p != out[0].partition)
    out.insert(9, InRecord(out[0].topic, wrong, 10_001, first["customer_id"].encode(),
                           orjson.dumps({**first, "event_id": "moved"}), NOW.timestamp()))
    out.insert(12, InRecord(out[0].topic, 1, 10_002, b"\xff\xfe", orjson.dumps({**first, "event_id": "bad-key"}),
                            NOW.timestamp()))  # a key that is no UTF-8: no state to read; re-keyed by its customer
    return out


def states_for(batch: list[InRecord], store: dict[str, bytes]) -> dict[tuple[str, int], bytes | None]:
    """What the worker reads ahead for ``batch`` (streams.worker.read_states) from ``store``."""
    return read_states({(r.key, r.partition) for r in batch}, lambda customer_id, _: store.get(customer_id))


def by_customer(out: Outbox, encoded: Encoded | None = None) -> dict[str, Any]:
    """What must be equal between a whole and a merged outbox: everything, per customer, in its order.
    ``encoded``: its tier changes and read-model records encoded (as the pool returns them), else ``out``'s
    encoded here (which empties its lists)."""
    encoded = encoded if encoded is not None else encode_outputs(out)
    view: dict[str, Any] = defaultdict(lambda: defaultdict(list))
    for change in encoded.changes:
        view[change.customer_id]["changes"].append(change)
    for record in encoded.records:
        view[record.customer_id]["read_model"].append(record)
    for key, value in encoded.snapshots:
        view[orjson.loads(key)[0]]["snapshots"].append((key, value))
    for notice in out.notices:
        view[notice.customer_id]["notices"].append(notice.model_dump())  # type: ignore[attr-defined]
    return {
        "customers": {c: dict(v) for c, v in view.items()},
        "state_writes": out.state_writes,
        "dead_letters": sorted((d.record.offset, d.reason) for d in out.dead_letters),
        "repartition": sorted(out.repartition),
        "counts": out.counts,
        "watermarks": out.watermarks,
        "due": out.due,
        "flags": out.flags,
        "moves": sorted(out.moves, key=repr),
        "elided": out.elided,
    }


def test_split_keeps_each_key_in_one_part_in_arrival_order():
    batch = records()
    parts, positions = split(batch, 3)
    for part, at in zip(parts, positions, strict=True):
        assert [t[2] for t in part] == [batch[i].offset for i in at]  # each record with its batch position
    assert sum(len(p) for p in parts) == len(batch)
    owner: dict[bytes | None, int] = {}
    for i, part in enumerate(parts):
        assert part, "every part gets records (60 customers over 3 parts)"
        for t in part:
            assert owner.setdefault(t[3], i) == i  # a key in one part only
    for part in parts:  # arrival order within a part: offsets of a partition only grow
        seen: dict[int, int] = {}
        for t in part:
            if t[2] < 10_000:
                assert t[2] > seen.get(t[1], -1)
                seen[t[1]] = t[2]
    keyless = InRecord("t.order", 0, 1, None, b"{}", None)
    assert split([keyless], 4)[0][0] == [("t.order", 0, 1, None, b"{}", None)]


def test_rows_are_the_records_as_tuples_and_one_part_is_the_batch_itself():
    """Session 15: the worker hands the pool tuples made straight from its messages (streams.worker.to_row),
    not InRecords packed again; one part is the batch as it came, with every position; more parts go by
    CRC-32 of the key (keyless and empty keys to the first)."""
    message = Message("t.order", 3, 17, 1_700_000_000.5, 0, None, b"c1", b'{"a": 1}', None)
    assert to_row(message) == split([to_record(message)], 1)[0][0][0] == ("t.order", 3, 17, b"c1", b'{"a": 1}',
                                                                           1_700_000_000.5)
    keyless = Message("t.order", 0, 1, 1.0, 0, None, None, None, None)
    assert to_row(keyless) == ("t.order", 0, 1, None, b"", 1.0)
    assert to_row(Message("t.order", 0, 2, 1.0, 0, None, b"", bytearray(b"{}"), None))[3:5] == (b"", b"{}")
    batch = records()
    rows = [(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in batch]
    rows += [("t.order", 0, 90_000, None, b"{}", None), ("t.order", 0, 90_001, b"", b"{}", None)]
    assert split_rows(rows, 1) == ([rows], [list(range(len(rows)))])
    for groups in (2, 3):
        expected: list[list[int]] = [[] for _ in range(groups)]
        for i, row in enumerate(rows):
            expected[zlib.crc32(row[3]) % groups if row[3] else 0].append(i)
        parts, positions = split_rows(rows, groups)
        assert positions == expected
        assert parts == [[rows[i] for i in at] for at in expected]


def test_a_batch_decided_in_parts_and_merged_equals_it_decided_whole():
    """Two batches, so the second reads stored states (dedup, lifecycle tracks, elision keys)."""
    processor = build_processor(SETTINGS)
    batch = records()
    first, second = batch[: len(batch) // 2], batch[len(batch) // 2:]
    store: dict[str, bytes] = {}
    whole = []
    for part in (first, second):
        out = processor.process(part, loader(states_for(part, store)), NOW)
        store.update({c: w[1] for c, w in out.state_writes.items()})
        whole.append(out)
    store2: dict[str, bytes] = {}
    merged = []
    for part in (first, second):
        outs = []
        groups, positions = split(part, 3)
        for group in groups:
            group_records = [InRecord(*t) for t in group]
            outs.append(processor.process(group_records, loader(states_for(group_records, store2)), NOW))
        out = merge(outs, list(zip(groups, positions, strict=True)))
        store2.update({c: w[1] for c, w in out.state_writes.items()})
        merged.append(out)
    for a, b in zip(whole, merged, strict=True):
        assert a.tier_changes, "the load makes tier changes (else the comparison proves little)"
        assert by_customer(a) == by_customer(b)
    assert [d.record.offset for d in whole[0].dead_letters] == [10_000]  # the malformed record
    rerouted = {orjson.loads(value)["event_id"] for _, value in whole[0].repartition}
    assert rerouted == {"moved", "bad-key"}  # on the wrong partition; keyed by no UTF-8


def test_a_customers_re_routed_records_keep_their_order_across_parts():
    """Mis-keyed records are split by the key they came with: one customer's records under two wrong keys
    land in two parts, and must reach the repartition topic in arrival order (then they are decided in
    it). Regression: the first version put the first part's before the second's."""
    processor = build_processor(SETTINGS)
    first_part = next(k for k in (f"k{i}".encode() for i in range(100)) if zlib.crc32(k) % 2 == 1)
    second_part = next(k for k in (f"k{i}".encode() for i in range(100)) if zlib.crc32(k) % 2 == 0)
    events = [{"event_id": f"e{i}", "customer_id": "c1", "occurred_at": (END - timedelta(days=3 - i)).isoformat(),
               "type": "order", "order_id": f"o{i}", "status": "placed", "amount": "10"} for i in range(3)]
    batch = [InRecord(TOPICS.input("order"), 0, i, key, orjson.dumps(e), NOW.timestamp())
             for i, (key, e) in enumerate(zip((first_part, second_part, first_part), events, strict=True))]
    groups, positions = split(batch, 2)
    assert [len(g) for g in groups] == [1, 2]  # e1 alone in the first list, e0 and e2 in the second
    outs = [processor.process([InRecord(*t) for t in g], loader({}), NOW) for g in groups]
    merged = merge(outs, list(zip(groups, positions, strict=True)))
    assert [orjson.loads(v)["event_id"] for _, v in merged.repartition] == ["e0", "e1", "e2"]
    assert [orjson.loads(v)["event_id"] for _, v in merge(outs).repartition] == ["e1", "e0", "e2"]  # unordered


def test_merge_sums_counters_and_keeps_the_newest_watermark():
    a, b = Outbox(), Outbox()
    a.counts[("order", "applied")] = 2
    b.counts[("order", "applied")] = 3
    a.watermarks[0] = NOW
    b.watermarks[0] = NOW - timedelta(hours=1)
    b.watermarks[1] = NOW
    a.elided["p"] = 1
    b.elided["p"] = 4
    out = merge([a, b])
    assert out.counts == {("order", "applied"): 5}
    assert out.watermarks == {0: NOW, 1: NOW}
    assert out.elided == {"p": 5}


@pytest.fixture
def pool():
    created: list[DecisionPool] = []

    def make(processes: int, min_records: int = 1) -> DecisionPool:
        created.append(DecisionPool(SETTINGS, processes, min_records))
        return created[-1]

    yield make
    for p in created:
        p.stop()


def test_the_pool_decides_as_the_worker_would(pool):
    """Real spawned children, two of them: the outbox equals the in-process one."""
    batch = records()
    states = states_for(batch, {})
    expected = build_processor(SETTINGS).process(batch, loader(states), NOW)

    async def run() -> tuple[list[int], tuple[Outbox, Encoded]]:
        decisions = pool(2)
        pids = await decisions.start()
        return pids, await decisions.decide(batch, states, NOW)

    pids, (out, encoded) = asyncio.run(run())
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # encoded in the children; the outbox's lists are left empty
    assert encoded.changes and encoded.records and encoded.snapshots
    assert not out.tier_changes and not out.read_model
    assert by_customer(out, encoded) == by_customer(expected)


def test_a_prepared_batch_is_decided_as_the_same_rows_and_says_when_it_is_sent(pool):
    """``decide_rows`` of a batch prepared ahead (streams.pipeline) equals that of its rows; ``sent`` is
    called once, when the parts are on their way and before their outcome is back."""
    batch = records()
    states = states_for(batch, {})
    rows = [(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in batch]
    calls: list[str] = []

    async def run() -> tuple[tuple[Outbox, Encoded], tuple[Outbox, Encoded]]:
        decisions = pool(2)
        await decisions.start()
        plain = await decisions.decide_rows(rows, states, NOW)
        decided = decisions.decide_rows(decisions.prepare(rows), states, NOW, sent=lambda: calls.append("sent"))
        task = asyncio.ensure_future(decided)
        await asyncio.sleep(0)
        calls.append("awaiting")  # the children take milliseconds at least: their outcome is not back yet
        return plain, await task

    (out, encoded), (out2, encoded2) = asyncio.run(run())
    assert calls == ["sent", "awaiting"]
    assert by_customer(out2, encoded2) == by_customer(out, encoded)


def test_the_pool_decays_as_the_worker_would(pool):
    """Customers due for re-scoring, decided by two real children round after round (each round at the due
    times the one before scheduled, reading the states it wrote): the same outbox every round (tier changes,
    read-model records, snapshots, state writes, next due times) as the worker's own ``decay``."""
    processor = build_processor(SETTINGS)
    batch = records()
    decided = processor.process(batch, loader(states_for(batch, {})), NOW)
    store = {(c, w[0]): w[1] for c, w in decided.state_writes.items()}
    due = [(c, partition, at) for c, (partition, at) in decided.due.items()]
    assert len(due) > 2 * 8, "enough customers for both children"

    async def run() -> tuple[int, int]:
        decisions = pool(2, min_records=8)
        changes = writes = 0
        for _ in range(8):
            states = {(c, p): store.get((c, p)) for c, p, _ in due}
            expected = processor.decay(due, loader(states), NOW)
            out, encoded = await decisions.decay(due, states, NOW)
            assert not out.tier_changes and not out.read_model  # encoded in the children
            assert by_customer(out, encoded) == by_customer(expected)
            changes, writes = changes + len(encoded.changes), writes + len(out.state_writes)
            store.update({(c, w[0]): w[1] for c, w in out.state_writes.items()})
            due[:] = [(c, partition, at) for c, (partition, at) in out.due.items()]
        return changes, writes

    changes, writes = asyncio.run(run())
    assert changes and writes, "the rounds change tiers and states (else the comparison proves little)"


def test_a_small_batch_goes_to_one_child(pool):
    batch = records(customers=3, days=2)[:10]

    async def run() -> Outbox:
        decisions = pool(2, min_records=64)
        return (await decisions.decide(batch, states_for(batch, {}), NOW))[0]

    out = asyncio.run(run())
    assert sum(out.counts.values()) == len(batch)


def test_children_with_other_policies_refuse_to_start(pool):
    """The children load the policy files again: one changed meanwhile must not decide (rollout guard)."""
    async def run() -> None:
        decisions = pool(1)
        decisions.expect = (("five_tier", 999, None),)
        with pytest.raises(RuntimeError, match="other policies than the worker"):
            await decisions.start()

    asyncio.run(run())
    assert fingerprint(build_processor(SETTINGS))[0][:1] == ("five_tier",)


def test_stopping_while_the_children_start_cancels_the_batch(pool):
    batch = records(customers=5, days=3)

    async def run() -> None:
        decisions = pool(1)
        batch_task = asyncio.ensure_future(decisions.decide(batch, states_for(batch, {}), NOW))
        await asyncio.sleep(0.05)  # the batch now waits for the children to start
        decisions.stop()
        with pytest.raises(asyncio.CancelledError):
            await batch_task

    asyncio.run(run())


def test_a_dead_child_fails_the_batch_and_a_stopped_pool_decides_nothing(pool):
    batch = records(customers=5, days=3)

    async def run() -> None:
        decisions = pool(1)
        (pid,) = await decisions.start()
        assert decisions.compiled == [accel.status().compiled]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await decisions.decide(batch, states_for(batch, {}), NOW)
        decisions.stop()
        with pytest.raises(asyncio.CancelledError):
            await decisions.decide(batch, states_for(batch, {}), NOW)

    asyncio.run(run())


CHILDREN_OF_A_KILLED_WORKER = """
import asyncio, sys
from streams.decision_process import DecisionPool
from tierstream.readmodel.writer import LedgerWrite
from tierstream.settings import Settings

async def main():
    pool = DecisionPool(Settings(policies=("five_tier",)), 2)
    pids = await pool.start()
    print(" ".join(map(str, pids)), flush=True)
    await asyncio.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_children_exit_when_the_worker_is_killed(tmp_path):
    """kill -9 of the worker's process leaves no decision process behind (each watches its parent)."""
    script = tmp_path / "parent.py"
    script.write_text(CHILDREN_OF_A_KILLED_WORKER)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _alive(p)}
        time.sleep(0.1)
    assert not alive, f"decision processes {alive} outlived their worker"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_an_encoded_change_is_the_wire_record_and_the_ledger_write():
    """streams.encoded's invariant: the same bytes as the worker's own encoders, field for field."""
    batch = records()
    out = build_processor(SETTINGS).process(batch, loader(states_for(batch, {})), NOW)
    assert out.tier_changes
    for change, encoded in zip(out.tier_changes, encode_changes(out.tier_changes), strict=True):
        assert encoded.wire == encode_change(change)
        assert encoded.ledger == LedgerWrite.of(change)
        assert encoded.ledger.score == change.effective_at.timestamp()
        assert (encoded.customer_id, encoded.policy, encoded.from_tier, encoded.to_tier, encoded.cause) == (
            change.customer_id, change.policy, change.from_tier, change.to_tier, change.cause)


def test_encoded_records_are_the_writers_and_the_snapshot_topics():
    """streams.encoded's invariant for read-model records: each is ``RecordWrite.of`` its record, and the
    snapshot records are those of the records whose (customer, policy) changed tier or carry an override,
    as the worker built them before (key ``[customer, policy]``, value the record's JSON)."""
    processor = build_processor(SETTINGS)
    batch = records()
    first, second = batch[: len(batch) // 2], batch[len(batch) // 2:]  # the second batch reads stored states
    store = {c: w[1] for c, w in processor.process(first, loader(states_for(first, {})), NOW).state_writes.items()}
    out = processor.process(second, loader(states_for(second, store)), NOW)
    read_model, changed = list(out.read_model), {(c.customer_id, c.policy) for c in out.tier_changes}
    assert read_model and changed and len(changed) < len(read_model), "some records refresh scores only"
    encoded = encode_outputs(out)
    assert not out.tier_changes and not out.read_model  # carried by ``encoded`` from now on
    assert encoded.records == [RecordWrite.of(r) for r in read_model]
    assert encoded.records[0].value == codec.encode(read_model[0])
    expected = [(orjson.dumps([r.customer_id, r.policy]), orjson.dumps(r.model_dump(mode="json")))
                for r in read_model if (r.customer_id, r.policy) in changed or r.override is not None]
    assert encoded.snapshots == expected
    assert len(expected) < len(read_model)


def test_encoded_bytes_hold_no_more_memory_than_their_length():
    """orjson's output buffers keep their power-of-two capacity (streams.encoded.exact): a batch's encoded tier
    changes and stored states are copied to their size, or they would hold several times their bytes."""
    batch = records(customers=200)
    out = build_processor(SETTINGS).process(batch, loader(states_for(batch, {})), NOW)
    states = [CustomerState.from_bytes(w[1]) for w in out.state_writes.values()]
    assert out.tier_changes and states
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        encoded = encode_changes(out.tier_changes)
        stored = [state.to_bytes() for state in states]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    content = sum(len(e.wire) + len(e.ledger.member) for e in encoded) + sum(map(len, stored))
    objects = 3 * len(encoded) + len(stored)
    assert held < content + 250 * objects, (held, content)  # headers and tuples, not 4-16 kB buffers each


def test_the_worker_hands_the_pool_its_messages_as_rows_with_the_states_their_keys_name():
    """``Worker._handle``'s pool branch (session 15: tuples straight from the messages): every message as
    ``to_row`` makes it, in order, and the stored state of each (customer, partition) its keys name, read
    once; keyless and non-UTF-8 keys read nothing (their records are dead-lettered or re-routed)."""
    messages = [Message("t.order", p, o, 1.0, 0, None, key, b"{}", None)
                for p, o, key in [(0, 5, b"c1"), (1, 9, b"c2"), (0, 6, b"c1"), (2, 1, None), (3, 2, b"\xff")]]
    handed: list[tuple[Any, Any]] = []
    reads: list[tuple[str, int]] = []

    class Pool:
        def prepare(self, rows: list[Any]) -> PreparedRows:
            return DecisionPool(SETTINGS, 2).prepare(rows)  # needs no children

        async def decide_rows(self, rows: Any, states: Any, now: datetime, sent: Any = None
                              ) -> tuple[Outbox, Encoded]:
            handed.append((rows, states))
            return Outbox(), Encoded([], [], [])

    worker = Worker.__new__(Worker)
    worker.decisions = Pool()  # type: ignore[assignment]
    worker.app = SimpleNamespace(should_stop=False, consumer_generation_id=1,  # type: ignore[assignment]
                                 flow_control=SimpleNamespace(is_active=lambda: True))
    worker.owned = {0, 1}
    worker.watermarks = {}
    worker.gauges = SimpleNamespace(on_batch=lambda *_: None)  # type: ignore[assignment]
    worker.use_bulk = False

    def loader(sizes: dict[str, int]) -> Any:
        def load(customer_id: str, partition: int) -> bytes:
            reads.append((customer_id, partition))
            return f"{customer_id}@{partition}".encode()
        return load

    worker.loader = loader  # type: ignore[method-assign]
    worker._write_states = lambda writes, bulk: None  # type: ignore[method-assign]
    tail = asyncio.run(worker._handle(messages, 1))
    assert tail is not None
    (prepared, states), = handed
    assert prepared.rows == [to_row(m) for m in messages]
    assert states == {("c1", 0): b"c1@0", ("c2", 1): b"c2@1"}
    assert sorted(reads) == [("c1", 0), ("c2", 1)]  # once per customer and partition


def test_a_prepared_batch_holds_the_parts_split_rows_gives_each_pickled():
    """``DecisionPool.prepare`` (made ahead of a batch's decision: streams.pipeline): the parts of
    :func:`split_rows`, numbered, empty ones left out, each part's records pickled as they are, and the
    distinct (key, partition) pairs whose states the batch needs."""
    rows = [to_row(Message("t.order", p, o, 1.0, 0, None, key, b"{}", None))
            for p, o, key in [(0, 5, b"c1"), (1, 9, b"c2"), (0, 6, b"c1"), (2, 1, None)]]
    pool = DecisionPool(SETTINGS, 3, min_records=1)
    prepared = pool.prepare(rows)
    groups, positions = split_rows(rows, 3)
    assert prepared.rows == rows and prepared.count == 3
    assert [(n, group, at) for n, group, at, _ in prepared.parts] == [
        (n, groups[n], positions[n]) for n in range(3) if groups[n]]
    assert all(pickle.loads(blob) == group for _, group, _, blob in prepared.parts)
    assert prepared.keys == {(b"c1", 0), (b"c2", 1), (None, 2)}
    # fewer records than min_records per child: one part
    assert DecisionPool(SETTINGS, 3, min_records=64).prepare(rows).count == 1


def test_encoded_outputs_cross_the_pipe_as_plain_tuples_and_come_back_equal():
    """``Encoded.flat`` (what a child returns) holds no named tuple, so pickle neither dumps nor loads one
    through interpreted Python; ``Encoded.from_flat`` gives back equal outputs of the writer's own types."""
    batch = records()
    encoded = encode_outputs(build_processor(SETTINGS).process(batch, loader(states_for(batch, {})), NOW))
    assert encoded.changes and encoded.records and encoded.snapshots
    flat = encoded.flat()
    data = pickle.dumps(flat, protocol=pickle.HIGHEST_PROTOCOL)
    for name in (b"RecordWrite", b"LedgerWrite", b"EncodedChange"):
        assert name not in data
    back = Encoded.from_flat(pickle.loads(data))
    assert back == encoded
    assert type(back.records[0]) is RecordWrite and back.records[0].value == encoded.records[0].value
    assert type(back.changes[0]) is EncodedChange and type(back.changes[0].ledger) is LedgerWrite
    assert back.changes[0].ledger.member == encoded.changes[0].ledger.member
