"""A batch's tail (its outputs, then its acks) runs beside the next batch's decisions, one tail at a time,
in batch order (streams.worker.Worker.follow, session 10, issue 8). The tails here are stand-ins that
record when they run; the real ones are exercised end to end by tests/integration (the differential,
kill -9 and scale-out tests)."""

from __future__ import annotations

import asyncio

from streams.worker import Worker


class _App:
    def __init__(self) -> None:
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


class _Tail:
    """Finishes when released; records its start and end in ``log``."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail
        self.release = asyncio.Event()

    async def finish(self) -> list[str]:
        self.log.append(f"{self.name} starts")
        await self.release.wait()
        self.log.append(f"{self.name} ends")
        if self.fail:
            raise RuntimeError("broker refused the batch")
        return [self.name]


def _worker() -> Worker:
    # follow/settle use only the app (to crash) and the tail in flight: no Faust app needed
    worker = Worker.__new__(Worker)
    worker.app = _App()  # type: ignore[assignment]
    worker._tail = None
    return worker


def test_tails_run_beside_the_next_batch_one_at_a_time_in_batch_order():
    async def main() -> list[str]:
        worker, log, acked = _worker(), [], []
        first, second = _Tail("t1", log), _Tail("t2", log)
        assert worker.follow(first, acked.extend) is None  # type: ignore[arg-type]
        await asyncio.sleep(0)
        log.append("next batch decided")  # follow returned while t1 is still in flight
        previous = worker.follow(second, acked.extend)  # type: ignore[arg-type]
        assert previous is not None and not previous.done()  # handle waits for it before the next batch
        await asyncio.sleep(0.01)
        assert log == ["t1 starts", "next batch decided"]  # t2 waits for t1
        assert not acked
        first.release.set()
        await asyncio.wait([previous])
        assert acked == ["t1"]
        second.release.set()
        await worker.settle()
        assert acked == ["t1", "t2"]  # acks in batch order, each once its tail ended
        return log

    assert asyncio.run(main()) == ["t1 starts", "next batch decided", "t1 ends", "t2 starts", "t2 ends"]


def test_a_tail_is_in_flight_from_the_moment_it_follows():
    """A decay run settling right after a batch waits for that batch's tail, even before it started
    (else a decay tier change could overtake the batch's own change of the same customer)."""
    async def main() -> list[str]:
        worker, log = _worker(), []
        first, second = _Tail("t1", log), _Tail("t2", log)
        worker.follow(first, lambda _: log.append("acked t1"))  # type: ignore[arg-type]
        worker.follow(second, lambda _: log.append("acked t2"))  # type: ignore[arg-type]

        async def decay() -> None:
            await worker.settle()
            log.append("decay outputs")

        running = asyncio.ensure_future(decay())
        first.release.set()
        await asyncio.sleep(0.01)
        assert "decay outputs" not in log  # t2 has not ended (it has only just started)
        second.release.set()
        await running
        return log

    assert asyncio.run(main()) == ["t1 starts", "t1 ends", "acked t1", "t2 starts", "t2 ends", "acked t2",
                                   "decay outputs"]


def test_settle_waits_for_the_tail_in_flight():
    async def main() -> None:
        worker, log = _worker(), []
        tail = _Tail("t1", log)
        await worker.settle()  # nothing in flight: returns at once
        worker.follow(tail, lambda _: log.append("acked"))  # type: ignore[arg-type]
        asyncio.get_running_loop().call_later(0.02, tail.release.set)
        await worker.settle()
        assert log == ["t1 starts", "t1 ends", "acked"]

    asyncio.run(main())


def test_a_failing_tail_crashes_the_app_and_nothing_after_it_leaves():
    async def main() -> None:
        worker, log, acked = _worker(), [], []
        failing, after = _Tail("t1", log, fail=True), _Tail("t2", log)
        worker.follow(failing, acked.extend)  # type: ignore[arg-type]
        worker.follow(after, acked.extend)  # type: ignore[arg-type]
        failing.release.set()
        after.release.set()
        await worker.settle()
        assert acked == []
        assert log == ["t1 starts", "t1 ends"]  # t2's outputs never left
        assert [str(e) for e in worker.app.crashed] == ["broker refused the batch"]  # type: ignore[attr-defined]

    asyncio.run(main())
