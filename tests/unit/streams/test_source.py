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
