"""Batch consumption beneath Faust's per-event stream layer.

Faust's ``Stream`` costs ~140 µs per event (event objects, sensors, ack bookkeeping per ``__anext__``)
whatever the batching (BROKER-NOTES.md, robinhood/faust #563): the ceiling of any agent is ~7,000
events/s. ``RawSource`` is a Faust topic channel whose ``decode`` hands the conductor the raw
``Message`` unchanged; the conductor puts it in the channel's flow-controlled queue as it would an
event, and :func:`batches` drains that queue in lists. Everything Faust guarantees still holds:

- **offsets**: the conductor increfs each message and the consumer tracks it; ``ack_all`` acks after
  the batch's effects, and only acked offsets are committed (after a producer flush);
- **partition ownership**: on revocation Faust suspends flow control and clears every managed queue
  (this one included), so unprocessed records of revoked partitions are dropped, never acked, and
  re-delivered to the new owner. Faust's ``wait_empty`` does not see our batches (the messages are not
  tracked as in-flight events), so the worker applies Faust's own staleness rule to each batch: a
  message of an older consumer generation, or any message while flow control is suspended, is neither
  applied nor acked (:meth:`streams.worker.Worker.epoch`);
- **recovery**: the consumer does not fetch a partition until its table has recovered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import faust
from faust.types import Message
from faust.types.tuples import ConsumerMessage, ack_lock
from mode.utils.futures import notify


class RawSource(faust.Topic):
    """A topic channel that delivers raw :class:`faust.types.Message` objects, not events."""

    def _compile_decode(self) -> None:
        # Topic.__init__ compiles a schema-based ``decode`` into an instance attribute; replace it with
        # the identity, so no Event is built per record.
        self.decode = self._raw_decode  # type: ignore[method-assign]

    async def _raw_decode(self, message: Message, *, propagate: bool = False) -> Message:
        """No decoding: the batch core parses the bytes itself (and dead-letters what it cannot)."""
        return message

    async def put(self, value: Any) -> None:
        """Queue a record when the queue was full (the conductor's slow path): wait for room.

        Faust's ``Topic.put`` refuses unless the channel is iterated with ``aiter()``, which this one never
        is (:func:`batches` reads the queue), and the conductor then loses the record in a task's exception.
        Measured: a backlog run of bench/bench_throughput.py filled the queue and lost records; those in
        the middle of a partition came back through the offset guard's seek, a partition's last ones
        did not (no later record reveals the hole). Regression test: tests/integration/test_source.py."""
        await self.queue.put(value)


async def batches(source: RawSource, max_records: int, max_wait: float, max_keys: int | None = None,
                  fill: Callable[[], bool] | None = None) -> AsyncIterator[list[Message]]:
    """Lists of up to ``max_records`` messages with at most ``max_keys`` distinct keys (customers): the
    first one awaited, the rest taken while they are already queued, and, when the worker is behind, while
    more arrive within ``max_wait`` seconds of the first. A list may straddle a rebalance: the worker checks
    each message's ``generation_id`` before applying anything.

    Why two limits: a batch decides each customer once, so its savings grow with events per customer and
    its memory (states, outputs, read-model records) with customers. Measured with bench/bench_throughput.py
    (one policy, session 9): 40,000-record batches drained 4,800 customers' backlog ~2 x faster than
    10,000-record ones (about eight events per customer per batch), and 50,000 customers' only 12 % faster
    for 313 MB more peak memory (about one event per customer per batch).

    Behind means the first message is older than ``_BEHIND_AFTER`` (wall clock minus its timestamp): then
    bigger batches are cheaper per record (one flush, one Redis round trip per batch) and waiting costs
    no latency that is not already there. Caught up, waiting to fill a batch only adds latency: the batch
    is cut as soon as the queue is empty (measured with bench/bench_throughput.py at half load: produce ->
    tier change p50 238 -> 147 ms, p99 428 -> 372 ms; backlog throughput unchanged, 3,492 vs 3,458/s).

    ``fill``: while it holds (the batch before is still being decided: streams.pipeline takes the next batch
    meanwhile), a batch that is behind waits for records until it is full, whatever ``max_wait``. Cut
    after ``max_wait`` instead, it held what came within 50 ms of the batch before being taken, a fraction
    of a batch: smaller batches fold fewer events per customer, and the first version of the pipeline lost
    ~8 % of its backlog throughput that way (session 20)."""
    queue = source.queue
    get_nowait = queue.get_nowait
    empty = asyncio.QueueEmpty
    max_keys = max_keys or max_records
    while True:
        first = _message(await queue.get())
        batch = [first]
        keys = {first.key}
        late = behind(batch)
        deadline = time.monotonic() + (max_wait if late else min(max_wait, _CAUGHT_UP_GRACE))
        while len(batch) < max_records and len(keys) < max_keys:
            try:
                message = _message(get_nowait())
            except empty:
                if time.monotonic() >= deadline and not (late and fill is not None and fill()):
                    break
                await asyncio.sleep(0.002)  # let the fetcher deliver more before we cut the batch
                continue
            batch.append(message)
            keys.add(message.key)
        yield batch


def behind(batch: Sequence[Message]) -> bool:
    """Whether the worker is behind by ``batch`` (not empty): its first record is older than
    ``_BEHIND_AFTER`` by the wall clock, or has no timestamp (see :func:`batches`)."""
    stamp = batch[0].timestamp
    return stamp is None or time.time() - stamp > _BEHIND_AFTER


#: A first record older than this means the worker is behind (a fetch and a batch take ~0.1-0.3 s on the
#: embedded broker at half load, so younger records are the normal pipeline, not a backlog).
_BEHIND_AFTER = 0.5
#: Caught up, a batch still waits this long for records fetched together with its first one.
_CAUGHT_UP_GRACE = 0.005


def _message(item: Any) -> Message:
    # Depending on the conductor implementation (pure Python or compiled), the queue holds our raw
    # message or an Event wrapping it.
    return item if isinstance(item, Message) else item.message


def ack_all(messages: Sequence[Message], consumer: Any) -> None:
    """Mark the batch's offsets as processed (committable at the next commit): for each message, what
    ``message.ack(consumer)`` does (faust-streaming 0.15.3: ``Message.ack``, ``ConsumerMessage.
    on_final_ack``, ``Consumer.ack``), under one hold of Faust's ``ack_lock`` for the whole batch.

    Why not call ``message.ack`` per message: that is three Python calls, three re-entries of the lock and a
    waiter notification per record, 8 % of the worker's own process with one policy (py-spy, session 13).
    Same effect: the message is marked acked once its reference count reaches zero; then, if acks are on
    for its topic and its offset is not below the committed one and not acked before, the offset joins the
    partition's acked offsets and the consumer's count. Waiters for acks are notified once, at the end.
    Any other kind of message (not a consumer's own) is acked as Faust acks it."""
    committed = consumer._committed_offset
    acked_index = consumer._acked_index
    acked = consumer._acked
    unacked = consumer._unacked_messages
    enabled = consumer.app.topics.acks_enabled_for
    topics: dict[str, bool] = {}
    added = 0
    final = False  # whether any message reached Consumer.ack (which notifies ack waiters)
    with ack_lock:  # re-entrant: a message.ack below takes it again
        try:
            for message in messages:
                if type(message) is not ConsumerMessage:
                    message.ack(consumer)
                    continue
                if message.acked:
                    continue
                refcount = message.refcount = max(message.refcount - 1, 0)
                if refcount:
                    continue  # another holder still has it (Message.decref)
                message.acked = True
                final = True
                topic = message.topic
                on = topics.get(topic)
                if on is None:
                    on = topics[topic] = enabled(topic)
                if not on:
                    continue
                tp, offset = message.tp, message.offset
                floor = committed[tp]
                if floor is None or offset >= floor:
                    index = acked_index[tp]
                    if offset not in index:
                        unacked.discard(message)
                        index.add(offset)
                        acked[tp].append(offset)
                        added += 1
        finally:
            consumer._n_acked += added
            if final:
                notify(consumer._waiting_for_ack)
