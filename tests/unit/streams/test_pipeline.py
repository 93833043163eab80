"""The worker's batch loop (streams/pipeline.py): batches handled one at a time and in order, the next one
prepared while a batch that was behind is decided, errors and cancellation as with a plain ``async for``.

A fake worker records what happens when; the source is an async generator the test controls. No broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from streams import pipeline


class FakeWorker:
    """Records the order of prepare / handle start / handle end; ``handle`` waits on ``gates[batch]``."""

    def __init__(self, fail: int | None = None, unsent: frozenset[int] = frozenset()) -> None:
        self.log: list[tuple[str, int]] = []
        self.gates: dict[Any, asyncio.Event] = {}
        self.unsent = unsent  # batches that never go to the decision processes (sent is not called)
        self.opened_sent = True
        self.active = 0
        self.most_active = 0
        self.fail = fail
        self.prepared: dict[int, Any] = {}

    def gate(self, batch: Any) -> asyncio.Event:
        event = self.gates.get(batch)
        if event is None:
            event = self.gates[batch] = asyncio.Event()
            if isinstance(batch, tuple) and self.opened_sent:
                event.set()  # unless a test holds it, a batch is sent at once
        return event

    def prepare(self, messages: Sequence[int]) -> tuple[str, int]:
        self.log.append(("prepare", messages[0]))
        return ("prepared", messages[0])

    async def handle(self, messages: Sequence[int], finished: Callable[[Sequence[int]], None],
                     prepared: Any = None, sent: Callable[[], None] | None = None) -> bool:
        batch = messages[0]
        self.prepared[batch] = prepared
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.log.append(("start", batch))
        try:
            await self.gate(("sent", batch)).wait()  # what comes before the decision (lock, admission, reads)
            if sent is not None and batch not in self.unsent:
                self.log.append(("sent", batch))
                sent()
            await self.gate(batch).wait()
            if batch == self.fail:
                raise RuntimeError(f"batch {batch} failed")
            finished(messages)
        finally:
            self.active -= 1
            self.log.append(("end", batch))
        return True


async def source_of(batches: list[list[int]], then: asyncio.Event | None = None) -> AsyncIterator[list[int]]:
    """``batches``, then (if ``then``) nothing more until ``then`` is set: a source with no next batch."""
    for batch in batches:
        yield batch
    if then is not None:
        await then.wait()


def open_all(worker: FakeWorker, batches: int) -> None:
    for b in range(batches):
        worker.gate(b).set()


def start(worker: FakeWorker, batches: list[list[int]], ahead: bool, then: asyncio.Event | None = None
          ) -> asyncio.Future[None]:
    """``pipeline.run`` over ``batches`` (then, if ``then``, a source with nothing more), acks dropped, every
    batch behind (``ahead``) or none, as a task."""
    return asyncio.ensure_future(pipeline.run(lambda _: source_of(batches, then), worker, lambda _: None,
                                              lambda _: ahead))


async def spin() -> None:
    """Let the loop run until everything that can proceed without a gate has (20 turns is plenty here)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_batches_are_handled_one_at_a_time_in_order_each_with_its_own_preparation() -> None:
    async def main() -> tuple[FakeWorker, list[Sequence[int]]]:
        worker = FakeWorker()
        open_all(worker, 4)
        acked: list[Sequence[int]] = []
        await pipeline.run(lambda _: source_of([[0, 1], [2], [3, 4, 5]]), worker, acked.append, lambda _: True)
        return worker, acked

    worker, acked = asyncio.run(main())
    assert acked == [[0, 1], [2], [3, 4, 5]]
    assert worker.most_active == 1
    assert worker.prepared == {0: ("prepared", 0), 2: ("prepared", 2), 3: ("prepared", 3)}
    starts = [b for what, b in worker.log if what == "start"]
    ends = [b for what, b in worker.log if what == "end"]
    assert starts == ends == [0, 2, 3]


def test_behind_the_next_batch_is_prepared_while_the_batch_before_is_decided() -> None:
    async def main() -> list[tuple[str, int]]:
        worker = FakeWorker()
        run = start(worker, [[0], [1], [2]], ahead=True)
        await spin()
        # batch 0 is being decided (its gate is shut): batch 1 is prepared already, not started
        assert ("prepare", 1) in worker.log and ("start", 1) not in worker.log
        assert ("prepare", 2) not in worker.log  # one batch ahead, no more
        worker.gate(0).set()
        await spin()
        assert ("prepare", 2) in worker.log and ("end", 1) not in worker.log
        open_all(worker, 3)
        await run
        return worker.log

    log = asyncio.run(main())
    assert log.index(("prepare", 1)) < log.index(("end", 0)) < log.index(("start", 1))
    assert log.index(("prepare", 2)) < log.index(("end", 1)) < log.index(("start", 2))


def test_caught_up_the_next_batch_is_taken_only_after_the_batch_before() -> None:
    async def main() -> list[tuple[str, int]]:
        worker = FakeWorker()
        run = start(worker, [[0], [1]], ahead=False)
        await spin()
        assert ("prepare", 1) not in worker.log
        open_all(worker, 2)
        await run
        return worker.log

    log = asyncio.run(main())
    assert log == [("prepare", 0), ("start", 0), ("sent", 0), ("end", 0),
                   ("prepare", 1), ("start", 1), ("sent", 1), ("end", 1)]


def test_a_failed_batch_ends_the_loop_at_once_even_with_no_next_batch() -> None:
    async def main() -> None:
        worker = FakeWorker(fail=1)
        never = asyncio.Event()
        open_all(worker, 2)
        # the source has no third batch and never ends: the failure must not wait for it
        await asyncio.wait_for(start(worker, [[0], [1]], ahead=True, then=never), timeout=5)

    with pytest.raises(RuntimeError, match="batch 1 failed"):
        asyncio.run(main())


def test_cancelled_the_loop_cancels_the_batch_in_flight_and_waits_for_it() -> None:
    async def main() -> FakeWorker:
        worker = FakeWorker()
        never = asyncio.Event()
        run = start(worker, [[0]], ahead=True, then=never)
        await spin()
        assert worker.active == 1
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return worker

    worker = asyncio.run(main())
    assert worker.active == 0
    assert worker.log[-1] == ("end", 0)  # unwound before the loop returned


def test_the_next_batch_is_prepared_only_once_the_batch_before_has_gone_to_the_decision_processes() -> None:
    """Preparing the next batch is CPU on the worker's loop: done while the batch in flight waits for the lock
    (a decay run) or reads its states, it would hold that batch back from the decision processes."""
    async def main() -> list[tuple[str, int]]:
        worker = FakeWorker()
        worker.opened_sent = False
        run = start(worker, [[0], [1]], ahead=True)
        await spin()
        assert ("start", 0) in worker.log and ("prepare", 1) not in worker.log  # batch 1 cut, not prepared
        worker.gate(("sent", 0)).set()
        await spin()
        assert ("prepare", 1) in worker.log and ("end", 0) not in worker.log
        worker.gate(("sent", 1)).set()
        open_all(worker, 2)
        await run
        return worker.log

    log = asyncio.run(main())
    assert log.index(("sent", 0)) < log.index(("prepare", 1)) < log.index(("end", 0))


def test_a_batch_that_never_goes_to_the_decision_processes_lets_the_next_be_prepared_once_it_ends() -> None:
    """A stale batch, one the offset guard admits nothing of, or a worker deciding in its own process never
    calls ``sent``: the next batch waits for the batch before to end, and no waiter is left behind."""
    async def main() -> tuple[list[tuple[str, int]], int]:
        worker = FakeWorker(unsent=frozenset({0}))
        run = start(worker, [[0], [1]], ahead=True)
        await spin()
        assert ("prepare", 1) not in worker.log
        open_all(worker, 2)
        await run
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return worker.log, len(others)

    log, left = asyncio.run(main())
    assert log.index(("end", 0)) < log.index(("prepare", 1))
    assert left == 0
