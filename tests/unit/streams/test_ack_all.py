"""streams.source.ack_all: a batch's acks under one hold of Faust's lock, with the same effect as Faust's
own ``message.ack(consumer)`` per message (faust-streaming 0.15.3), on the consumer's bookkeeping."""

from __future__ import annotations

import asyncio
import types
from collections import defaultdict
from typing import Any
from weakref import WeakSet

from faust.transport import consumer as faust_consumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.source import ack_all

ON, OFF = "t.order", "t.audit"  # input topic with acks, one without


def _consumer(waiter: asyncio.Future[Any] | None = None) -> Any:
    """The bookkeeping Faust's ``Consumer.ack`` reads and writes, and that method bound to it."""
    consumer = types.SimpleNamespace(
        _acked=defaultdict(list), _acked_index=defaultdict(set), _committed_offset=defaultdict(lambda: None),
        _unacked_messages=WeakSet(), _n_acked=0, _waiting_for_ack=waiter,
        app=types.SimpleNamespace(topics=types.SimpleNamespace(acks_enabled_for=lambda topic: topic == ON)))
    consumer.ack = types.MethodType(faust_consumer.Consumer.ack, consumer)
    consumer._committed_offset[TP(ON, 1)] = 5
    return consumer


def _messages() -> list[ConsumerMessage]:
    def message(topic: str, partition: int, offset: int, refcount: int = 0, acked: bool = False) -> ConsumerMessage:
        m = ConsumerMessage(topic, partition, offset, 1.0, 0, None, b"k", b"v", None, 1, 1, TP(topic, partition),
                            generation_id=3)
        m.refcount, m.acked = refcount, acked
        return m

    return [
        message(ON, 0, 0), message(ON, 0, 1), message(ON, 0, 2, refcount=2),  # still held by another: not acked
        message(ON, 0, 1),  # the same offset again (a re-delivery): counted once
        message(ON, 0, 3, acked=True),  # acked before
        message(ON, 1, 4), message(ON, 1, 5), message(ON, 1, 6),  # 4 is below the committed 5
        message(OFF, 0, 0),  # acks off for the topic: marked acked, not counted
    ]


def _view(consumer: Any, messages: list[ConsumerMessage]) -> Any:
    return ({tp: list(v) for tp, v in consumer._acked.items()}, {tp: set(v) for tp, v in consumer._acked_index.items()},
            consumer._n_acked, [(m.acked, m.refcount) for m in messages])


def test_the_same_bookkeeping_as_faust_acking_each_message():
    theirs, ours = _consumer(), _consumer()
    their_messages, our_messages = _messages(), _messages()
    for m in their_messages:
        m.ack(theirs)
    ack_all(our_messages, ours)
    assert _view(ours, our_messages) == _view(theirs, their_messages)
    acked, _, n, states = _view(ours, our_messages)
    assert acked == {TP(ON, 0): [0, 1], TP(ON, 1): [5, 6]} and n == 4  # hand-computed
    assert states[2] == (False, 1)  # held by another reference: one decref, not acked
    # a second pass acks what was still held, exactly as Faust would
    for m in their_messages:
        m.ack(theirs)
    ack_all(our_messages, ours)
    assert _view(ours, our_messages) == _view(theirs, their_messages)
    assert ours._acked[TP(ON, 0)] == [0, 1, 2] and ours._n_acked == 5  # its last reference released


def test_ack_waiters_are_woken_once_something_is_acked():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        idle = _consumer(loop.create_future())
        ack_all([], idle)
        assert not idle._waiting_for_ack.done()  # nothing reached the consumer: nobody woken
        busy = _consumer(loop.create_future())
        ack_all(_messages()[:1], busy)
        assert busy._waiting_for_ack.done()

    asyncio.run(main())
