"""The worker's batch loop: batches handed to the worker one after another, the next one taken and prepared
while a backlog batch is decided.

:func:`run` takes batches from ``source`` (:func:`streams.source.batches`) and hands each to
``worker.handle``, in order, each only after the one before has returned, so everything
:meth:`streams.worker.Worker.handle` guarantees (offsets admitted in order, one batch decided at a time,
tails in batch order, acks after outputs) holds as it did with a plain ``async for``. What changes: while a
batch that was behind (``ahead(batch)``: :func:`streams.source.behind`, its first record older than half a
second) is being decided, the loop already takes the next batch from the source (which fills it until it is
full or the batch before is done) and makes ``worker.prepare`` of it (its records split and pickled for the
decision processes). When the batch before returns, the next one goes to the decision processes after only
its admission and its state reads.

Why: measured with temporary timing lines (session 20: one policy, 4,800 customers, 40,000-record backlog
batches, two cores), the decision processes were idle for ~0.3 s of each ~0.8 s batch, while the worker's
own process merged the batch's outcome and wrote its states (~0.1 s), cut the next batch from the queue
(0.03-0.07 s), made its records' tuples (0.02-0.03 s), split them (~0.01 s) and pickled them (~0.03 s).
The last four now happen while the batch before is decided.

Why only when behind: caught up, the next batch is cut only once the batch before is done, as before, so it
takes every record that came meanwhile. Cut early, it would hold fewer records, and those that came after
its cut would wait for one more batch.

Invariants:
- ``worker.handle`` calls never overlap, and come in the source's order; only ``worker.prepare`` (a pure
  function of a batch's messages: nothing read from the store, nothing written, nothing acked) runs ahead.
- An exception of ``worker.handle`` ends the loop at once with that exception, even while the source has
  no next batch.
- Cancelled, the loop cancels the handling in flight (as cancelling a plain ``async for`` would) and
  waits until it has unwound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, Protocol

__all__ = ["BatchWorker", "run"]


class BatchWorker(Protocol):
    """What :func:`run` needs of :class:`streams.worker.Worker`."""

    def prepare(self, messages: Sequence[Any]) -> Any: ...

    async def handle(self, messages: Sequence[Any], finished: Callable[[Sequence[Any]], None],
                     prepared: Any = None, sent: Callable[[], None] | None = None) -> bool: ...


async def run(source: Callable[[Callable[[], bool]], AsyncIterable[list[Any]]], worker: BatchWorker,
              finished: Callable[[Sequence[Any]], None], ahead: Callable[[Sequence[Any]], bool]) -> None:
    """Hand every batch of ``source(deciding)`` to ``worker.handle(batch, finished, worker.prepare(batch))``,
    one at a time and in order; while ``handle`` of a batch for which ``ahead(batch)`` holds is in flight,
    take and prepare the next. ``deciding()`` tells the source whether a batch is in flight meanwhile (then
    it can keep filling the next: :func:`streams.source.batches`' ``fill``). Returns when the source ends
    and the last batch has been handled; raises what ``handle`` raised."""
    pending: asyncio.Future[bool] | None = None  # handle() of a batch that was behind, in flight

    def deciding() -> bool:
        return pending is not None and not pending.done()

    batches = aiter(source(deciding))
    away = asyncio.Event()  # set once the batch in flight has gone to the decision processes
    following: asyncio.Future[list[Any] | None] | None = None  # the next batch, being cut from the source
    try:
        while True:
            following = asyncio.ensure_future(_next(batches))
            if pending is not None:
                # The batch in flight may fail while the source has nothing more: wait for either.
                await asyncio.wait((following, pending), return_when=asyncio.FIRST_COMPLETED)
                if pending.done():
                    pending.result()  # raises what handle raised
                    pending = None
            messages = await following
            following = None
            if messages is None:
                break
            if pending is not None and not away.is_set():
                # Not before the batch in flight is on its way to the decision processes: preparing this one
                # first would hold it back (the first version did: 0.2 s, when a decay run had the lock).
                waiting = asyncio.ensure_future(away.wait())
                try:
                    await asyncio.wait((pending, waiting), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()
            prepared = worker.prepare(messages)  # while the batch in flight, if any, is decided
            if pending is not None:
                await pending
                pending = None
            away = asyncio.Event()
            handling = asyncio.ensure_future(worker.handle(messages, finished, prepared, away.set))
            if ahead(messages):
                pending = handling
            else:
                await handling
        if pending is not None:
            await pending
            pending = None
    finally:
        for task in (following, pending):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _next(batches: AsyncIterator[list[Any]]) -> list[Any] | None:
    """The next batch, or None at the end (a task cannot end with ``StopAsyncIteration`` cleanly)."""
    try:
        return await anext(batches)
    except StopAsyncIteration:
        return None
