"""Customers due for re-scoring, decided round after round in the decision processes
(streams.worker.Worker._run_due with a pool, session 13): each round reads the states the round before
decided, the rounds' outputs are carried out together in round order, and nothing is carried out when a
rebalance began while a round was decided. The pool and the processor are stand-ins; the real pool's
decay is compared with the worker's own in tests/unit/streams/test_decision_process.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from streams.batch import Outbox
from streams.due import DueIndex
from streams.encoded import Encoded
from streams.worker import Worker
from tierstream.readmodel.writer import RecordWrite

MARK = datetime(2026, 3, 1, tzinfo=UTC)


class _Pool:
    """Decides each due customer by appending to its state; ``again``: customers due once more (before the
    watermark) after their first round; ``on_round``: called as a round is decided (a rebalance, say)."""

    def __init__(self, again: set[str] = frozenset(), min_records: int = 1) -> None:
        self.min_records = min_records
        self.again = again
        self.seen: list[dict[tuple[str, int], bytes | None]] = []
        self.on_round = lambda: None

    async def decay(self, due: Sequence[tuple[str, int, datetime]], states: dict[tuple[str, int], bytes | None],
                    now: datetime) -> tuple[Outbox, Encoded]:
        self.seen.append(dict(states))
        self.on_round()
        out = Outbox()
        records = []
        for customer_id, partition, at in due:
            new = (states[(customer_id, partition)] or b"") + b"+"
            out.state_writes[customer_id] = (partition, new)
            records.append(RecordWrite(customer_id, "five_tier", len(new), "gold", new))
            if customer_id in self.again and len(new) == 2:
                out.due[customer_id] = (partition, at + timedelta(hours=1))
        return out, Encoded([], records, [])


def _worker(pool: _Pool, store: dict[str, bytes], due: list[str]) -> tuple[Worker, list[tuple[Outbox, Encoded]]]:
    worker = Worker.__new__(Worker)
    worker.app = SimpleNamespace(should_stop=False, consumer_generation_id=1,  # type: ignore[assignment]
                                 flow_control=SimpleNamespace(is_active=lambda: True))
    worker.gate = asyncio.Event()
    worker.gate.set()
    worker.decisions = pool  # type: ignore[assignment]
    worker.owned = {0}
    worker.watermarks = {0: MARK}
    worker.due = DueIndex()
    for customer_id in due:
        worker.due.schedule(0, customer_id, MARK - timedelta(days=1))
    worker.loader = lambda sizes: lambda customer_id, partition: store.get(customer_id)  # type: ignore[method-assign]
    carried: list[tuple[Outbox, Encoded]] = []

    async def carry_out(out: Outbox, sizes: Any, epoch: int, then: Any = None, encoded: Encoded | None = None
                        ) -> bool:
        assert encoded is not None, "the pool's rounds come encoded"
        carried.append((out, encoded))
        return True

    worker.carry_out = carry_out  # type: ignore[method-assign]
    return worker, carried


def test_rounds_read_the_states_the_round_before_decided_and_leave_together_in_round_order():
    pool = _Pool(again={"c1"})
    worker, carried = _worker(pool, {"c1": b"s", "c2": b"t"}, ["c1", "c2"])
    asyncio.run(worker._run_due())
    assert [sorted(s) for s in pool.seen] == [[("c1", 0), ("c2", 0)], [("c1", 0)]]
    assert pool.seen[1] == {("c1", 0): b"s+"}  # round two reads what round one decided, not the store
    (out, encoded), = carried
    assert out.state_writes == {"c1": (0, b"s++"), "c2": (0, b"t+")}
    assert [(r.customer_id, r.value) for r in encoded.records] == [("c1", b"s+"), ("c2", b"t+"), ("c1", b"s++")]


def test_nothing_is_carried_out_when_a_rebalance_began_during_a_round():
    pool = _Pool()
    worker, carried = _worker(pool, {"c1": b"s"}, ["c1"])

    def rebalance() -> None:
        worker.app.consumer_generation_id = 2  # type: ignore[attr-defined]

    pool.on_round = rebalance
    asyncio.run(worker._run_due())
    assert pool.seen and carried == []  # the new owner finds the customer due again (its state unchanged)


def test_a_round_smaller_than_a_part_is_decided_in_the_worker():
    pool = _Pool(min_records=5)
    worker, carried = _worker(pool, {"c1": b"s"}, ["c1"])
    decided: list[list[str]] = []

    def decay(due: Sequence[tuple[str, int, datetime]], load: Any, now: datetime) -> Outbox:
        decided.append([c for c, _, _ in due])
        out = Outbox()
        out.state_writes["c1"] = (0, load("c1", 0) + b"!")
        return out

    worker.processor = SimpleNamespace(decay=decay)  # type: ignore[assignment]
    asyncio.run(worker._run_due())
    assert pool.seen == [] and decided == [["c1"]]
    (out, encoded), = carried
    assert out.state_writes == {"c1": (0, b"s!")} and encoded == Encoded([], [], [])


def _decay_beside_a_tail(ends: str) -> list[str]:
    """``run_due`` (the real one, with the real ``carry_out``, ``settle`` and ``follow``) while the last batch's
    tail is in flight; the tail ends only once the round is decided, then ``ends``: "well", "failing" (the
    app crashes, as ``Worker._finish`` makes it) or "rebalanced" (a new consumer generation meanwhile).
    Returns what happened, in order."""
    pool = _Pool()
    worker, _ = _worker(pool, {"c1": b"s"}, ["c1"])
    del worker.carry_out  # the class's own
    order: list[str] = []

    async def crash(exc: BaseException) -> None:
        order.append("crashed")
        worker.app.should_stop = True  # type: ignore[attr-defined]  # what Faust's crash sets

    worker.app.crash = crash  # type: ignore[attr-defined]

    async def scenario() -> None:
        decided = asyncio.Event()

        class Tail:
            async def finish(self) -> list[str]:
                await decided.wait()
                order.append(f"tail ended {ends}")
                if ends == "failing":
                    raise RuntimeError("the broker refused the batch's tier changes")
                if ends == "rebalanced":
                    worker.app.consumer_generation_id = 2  # type: ignore[attr-defined]
                return []

        worker.lock = asyncio.Lock()
        worker._tail = None
        worker.follow(Tail(), lambda messages: order.append("acked"))  # type: ignore[arg-type]
        pool.on_round = lambda: (order.append("decided"), decided.set())

        async def no_bulk() -> None:
            return None

        async def written(*_: Any) -> None:
            order.append("read model")

        worker.bulk = no_bulk  # type: ignore[method-assign]
        worker._emit = lambda out, encoded, bulk: order.append("emitted") or 0  # type: ignore[method-assign]
        worker._write_read_model = written  # type: ignore[method-assign]
        worker._write_states = lambda writes, bulk: order.append(f"states {sorted(writes)}")  # type: ignore[method-assign]
        worker.gauges = SimpleNamespace(on_batch=lambda *_: None)  # type: ignore[assignment]
        # settling before deciding would wait forever here (the tail ends only once the round is decided)
        await asyncio.wait_for(worker.run_due(), 1.0)

    asyncio.run(scenario())
    return order


def test_due_customers_are_decided_while_the_last_batch_tail_runs_and_carried_out_after_it():
    """Session 15: ``run_due`` no longer waits for the batch tail in flight before deciding (the decision
    processes were idle for its length); ``carry_out`` still waits for it before anything leaves, so a
    decay's tier change of a customer follows the batch's own."""
    assert _decay_beside_a_tail("well") == [
        "decided", "tail ended well", "acked", "emitted", "read model", "states ['c1']"]


def test_nothing_of_a_decay_leaves_after_the_tail_before_it_failed():
    """Review of session 15: the tail's batch outputs never left (the app is crashing), so the decay decided
    from its states must not leave either (a customer's n + 1 before its n, never durable)."""
    assert _decay_beside_a_tail("failing") == ["decided", "tail ended failing", "crashed"]


def test_nothing_of_a_decay_leaves_when_a_rebalance_began_while_the_tail_ran():
    assert _decay_beside_a_tail("rebalanced") == ["decided", "tail ended rebalanced", "acked"]
