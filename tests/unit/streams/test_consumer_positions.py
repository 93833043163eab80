"""Seeks that land while aiokafka's consumer thread hands out fetched records are not lost
(streams.consumer_positions; the race session 7 took for the whole cause of its restart stalls).

The interleaving is made deterministic: the fetched records' iterator performs the "other thread's" seek
while the fetch result is being read, exactly where the GIL let Faust's app thread in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.consumer.subscription_state import Assignment
from aiokafka.structs import TopicPartition

from streams.consumer_positions import guard_positions

TP = TopicPartition("login", 0)


class Records:
    """Stands for aiokafka's PartitionRecords: offsets ``start``..``start + n - 1``; ``during(i)`` runs
    before the i-th record is handed out."""

    def __init__(self, start: int, n: int, during: Callable[[int], None] = lambda i: None) -> None:
        self.next_fetch_offset = start
        self._offsets: Iterator[int] = iter(range(start, start + n))
        self._during = during
        self._i = 0

    def __iter__(self) -> Records:
        return self

    def __next__(self) -> int:
        offset = next(self._offsets)  # StopIteration at the end, as PartitionRecords
        self._during(self._i)
        self._i += 1
        self.next_fetch_offset = offset + 1
        return offset


def _fetched(position: int, n: int, seek: tuple[int, int] | None = None) -> tuple[FetchResult, Any]:
    """A fetch result of ``n`` records from ``position`` on a fresh assignment, and the partition's state;
    ``seek=(i, x)``: the other thread seeks to ``x`` just before record ``i`` is handed out."""
    assignment = Assignment({TP})
    state = assignment.state_value(TP)
    state.seek(position)

    def during(i: int) -> None:
        if seek is not None and i == seek[0]:
            state.seek(seek[1])

    return FetchResult(TP, assignment=assignment, backoff=0, partition_records=Records(position, n, during)), state


def _run(body: Callable[[], None]) -> None:
    async def main() -> None:  # aiokafka's Assignment needs a running loop
        guard_positions()
        body()

    asyncio.run(main())


def test_a_seek_during_getall_is_kept_and_the_stale_records_are_not_handed_out() -> None:
    def body() -> None:
        result, state = _fetched(654, 5, seek=(2, 507))
        assert result.getall() == []  # the seek asked for 507 onwards: these records are not the next ones
        assert state.position == 507  # unguarded aiokafka overwrote it with 659: 507..658 never came
        assert not result.has_more()

    _run(body)


def test_a_seek_during_getone_is_kept() -> None:
    def body() -> None:
        result, state = _fetched(10, 3, seek=(0, 4))
        assert result.getone() is None
        assert state.position == 4

    _run(body)


def test_without_a_seek_records_and_positions_are_aiokafkas() -> None:
    def body() -> None:
        result, state = _fetched(100, 5)
        assert result.getall(max_records=2) == [100, 101]
        assert state.position == 102 and result.has_more()
        assert result.getone() == 102
        assert state.position == 103
        assert result.getall() == [103, 104]
        assert state.position == 105 and not result.has_more()

    _run(body)


def test_a_seek_before_the_result_is_read_discards_it() -> None:
    def body() -> None:
        result, state = _fetched(20, 3)
        state.seek(15)
        assert result.getall() == []
        assert state.position == 15

    _run(body)


def test_seek_to_leaves_the_buffered_result_to_the_consumer_thread() -> None:
    guard_positions()

    async def main() -> None:
        buffered, state = _fetched(30, 3)

        class Subscriptions:
            def seek(self, tp: TopicPartition, offset: int) -> None:
                state.seek(offset)

        fetcher = Fetcher.__new__(Fetcher)  # only what seek_to touches
        fetcher._subscriptions = Subscriptions()
        fetcher._loop = asyncio.get_running_loop()
        fetcher._wait_consume_future = fetcher._loop.create_future()
        fetcher._records = {TP: buffered}
        fetcher.seek_to(TP, 12)
        assert fetcher._records == {TP: buffered}  # the consumer thread's dict is not mutated from here
        assert state.position == 12
        await asyncio.sleep(0)  # the wake-up goes through the loop (thread-safe)
        assert fetcher._wait_consume_future.done()
        assert buffered.getall() == [] and not buffered.has_more()  # discarded by its own reader

    asyncio.run(main())
