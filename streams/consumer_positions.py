"""Seeks that are never lost: aiokafka's consumer position made safe against seeks from another thread.

Faust runs the aiokafka consumer in its own thread, but ``Consumer.seek`` calls aiokafka's ``seek`` from
the app's thread (faust ``ThreadDelegateConsumer._seek``). aiokafka 0.14 assumes one thread:

- ``FetchResult.getall`` (consumer thread) checks that the position is where its records begin, decodes
  them, then sets the position past them. A seek that lands in between is overwritten, so the records
  it was meant to fetch again never come. In the middle of a partition the next record reveals the hole
  (the offset guard seeks back); at a partition's tail nothing does, and the partition stands still,
  unapplied and uncommitted (found in session 7: the kill -9 restarts' stalls and a ``test_rollout`` CI
  failure; :mod:`streams.stalls` heals the effect after a few seconds).
- ``Fetcher.seek_to`` deletes the partition's buffered result from a dict the consumer thread may be
  reading: ``KeyError`` in ``Fetcher.fetched_records`` crashed the consumer thread once in 12 kill -9
  restarts on a saturated machine (session 4).

:func:`guard_positions` fixes both where they happen, with one process-wide lock around the two writes
of a position that can race: a seek, and a fetch result's advance, which becomes a compare-and-set (it
advances only from the position it checked; after a seek it discards its records instead, as a seek
means "the next records come from here"). A seek no longer deletes the buffered result: the consumer
thread discards a result whose start no longer matches the position itself (``check_assignment``), so
the dict is only touched by its own thread. Seeking through the consumer thread instead (Faust's
``seek_wait``) was tried in session 4 and made a commit stall; this keeps every seek where it is.

Invariant: after ``seek(tp, x)`` returns, the next record the consumer hands out for ``tp`` is at ``x``
(or later only if the broker has nothing at ``x``), whatever the consumer thread was doing meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

#: Held for a seek and for a fetch result's compare-and-set advance (both are a few attribute writes).
_POSITION_LOCK = threading.Lock()


def guard_positions() -> None:
    """Patch aiokafka (process-wide, idempotent): seeks serialized with fetch results' advances, and a
    seek that leaves the buffered fetch result to the consumer thread."""
    from aiokafka.consumer import fetcher as aiokafka_fetcher
    from aiokafka.consumer import subscription_state

    result_cls = aiokafka_fetcher.FetchResult
    if getattr(result_cls, "_tierstream_guarded", False):
        return
    state_cls = subscription_state.TopicPartitionState
    original_seek = state_cls.seek

    def seek(self: Any, position: int) -> None:
        with _POSITION_LOCK:
            original_seek(self, position)

    def getall(self: Any, max_records: int | None = None) -> list[Any]:
        # aiokafka 0.14's FetchResult.getall, with the position advanced by compare-and-set
        if not self.check_assignment(self._topic_partition) or not self.has_more():
            return []
        records = self._partition_records
        checked = records.next_fetch_offset  # the position check_assignment just found
        taken: list[Any] = []
        exhausted = True
        for message in records:
            taken.append(message)
            if max_records is not None and len(taken) >= max_records:
                exhausted = False
                break
        if not _advance(self, checked, records.next_fetch_offset):
            self._partition_records = None
            return []
        if exhausted:
            self._partition_records = None
        return taken

    def getone(self: Any) -> Any:
        # aiokafka 0.14's FetchResult.getone, with the same compare-and-set
        if not self.check_assignment(self._topic_partition) or not self.has_more():
            return None
        records = self._partition_records
        checked = records.next_fetch_offset
        message = next(records, None)
        if not _advance(self, checked, records.next_fetch_offset) or message is None:
            self._partition_records = None
            return None
        return message

    def seek_to(self: Any, tp: Any, offset: int) -> None:
        # aiokafka's Fetcher.seek_to without ``del self._records[tp]`` (see the module docstring); the
        # wake-up of the fetch routine goes through the consumer's loop, whichever thread seeks.
        self._subscriptions.seek(tp, offset)
        with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nothing to wake
            self._loop.call_soon_threadsafe(lambda: self._notify(self._wait_consume_future))

    state_cls.seek = seek
    result_cls.getall = getall
    result_cls.getone = getone
    aiokafka_fetcher.Fetcher.seek_to = seek_to
    result_cls._tierstream_guarded = True


def _advance(result: Any, checked: int, to: int) -> bool:
    """Move the partition's position from ``checked`` to ``to``; False (and no move) when a seek has
    changed it since the fetch result checked it."""
    state = result._assignment.state_value(result._topic_partition)
    with _POSITION_LOCK:
        if state._position != checked:
            return False
        state.consumed_to(to)
        return True
