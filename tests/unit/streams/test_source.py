"""How the worker cuts its input queue into batches (streams/source.py), without a broker."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from faust.types import TP, Message

from streams.source import batches


def _message(offset: int, key: bytes, age: float = 0.0) -> Message:
    return Message(topic="t", partition=0, offset=offset, timestamp=time.time() - age, timestamp_type=0,
                   headers=None, key=key, value=b"{}", checksum=None, tp=TP("t", 0))


async def _first_batches(keys: list[bytes], n: int, **limits: int) -> list[list[bytes]]:
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for offset, key in enumerate(keys):
        queue.put_nowait(_message(offset, key))
    out = []
    stream = batches(SimpleNamespace(queue=queue), max_wait=0.05, **limits)  # type: ignore[arg-type]
    async for batch in stream:
        out.append([m.key for m in batch])
        if len(out) == n:
            break
    return out


def test_a_batch_is_cut_at_its_distinct_customer_limit_however_many_records_each_has() -> None:
    # c1 and c2 recur; the third distinct customer is the last record of the first batch
    keys = [b"c1", b"c2", b"c1", b"c2", b"c1", b"c3", b"c1", b"c4", b"c5"]
    assert asyncio.run(_first_batches(keys, 2, max_records=100, max_keys=3)) == [
        [b"c1", b"c2", b"c1", b"c2", b"c1", b"c3"], [b"c1", b"c4", b"c5"]]


def test_a_batch_is_cut_at_its_record_limit_and_by_default_has_no_customer_limit() -> None:
    keys = [b"c1"] * 5 + [b"c2", b"c3", b"c4"]
    assert asyncio.run(_first_batches(keys, 2, max_records=4)) == [[b"c1"] * 4, [b"c1", b"c2", b"c3", b"c4"]]


async def _cut_while(fill: list[bool], age: float, arrivals: int, after: float) -> tuple[int, float]:
    """One batch cut from a queue holding one record of ``age`` seconds, with ``arrivals`` more put ``after``
    seconds later; ``fill[0]`` is what the ``fill`` predicate answers. Its size and how long it took."""
    queue: asyncio.Queue[Message] = asyncio.Queue()
    queue.put_nowait(_message(0, b"c0", age))

    async def arrive() -> None:
        await asyncio.sleep(after)
        for offset in range(1, arrivals + 1):
            queue.put_nowait(_message(offset, b"c%d" % offset, age))
        fill[0] = False  # the batch before is done: nothing more to wait for

    started = time.monotonic()
    late = asyncio.ensure_future(arrive())
    stream = batches(SimpleNamespace(queue=queue), max_records=1000, max_wait=0.05,  # type: ignore[arg-type]
                     fill=lambda: fill[0])
    batch = await anext(stream)
    took = time.monotonic() - started
    await late
    return len(batch), took


def test_behind_a_batch_keeps_filling_while_the_batch_before_is_decided() -> None:
    # streams.pipeline cuts the next batch while the one before is decided: cut at max_wait (50 ms) it would
    # miss the records that come later, a backlog batch would be a fraction of its size
    size, took = asyncio.run(_cut_while([True], age=5.0, arrivals=30, after=0.2))
    assert size == 31 and took >= 0.2


def test_behind_without_a_batch_in_flight_a_batch_is_cut_after_max_wait() -> None:
    size, took = asyncio.run(_cut_while([False], age=5.0, arrivals=30, after=0.2))
    assert size == 1 and took < 0.2


def test_caught_up_a_batch_is_cut_at_once_even_while_the_batch_before_is_decided() -> None:
    # its records are fresh: waiting would only add latency (and streams.pipeline does not cut ahead then)
    size, took = asyncio.run(_cut_while([True], age=0.0, arrivals=30, after=0.2))
    assert size == 1 and took < 0.2
