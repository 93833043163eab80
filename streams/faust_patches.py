"""Process-wide corrections to faust-streaming 0.15.3 behaviour, each with the measurement that made it
necessary. Applied by :func:`streams.app.create_app`; idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("tierstream.faust")


def tune_fetch_wait(max_wait_ms: int) -> None:
    """Set the consumer's fetch long-poll wait (Faust hard-codes 1,500 ms).

    A fetch returns as soon as data is there on real Kafka, but waits its full ``fetch_max_wait_ms`` on the
    embedded broker when a partition is caught up: at 1,500 ms that was most of the produce -> tier-change
    latency (p99 1.13 s -> 0.39 s at 100 ms, measured with bench/bench_throughput.py). Wraps the consumer
    factory (process-wide; the attribute is read when the consumer starts its fetcher)."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread, "_tierstream_original_create", None) or thread._create_worker_consumer

    def create(self: object, transport: object) -> object:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    thread._tierstream_original_create = original  # type: ignore[attr-defined]
    thread._create_worker_consumer = create  # type: ignore[method-assign]


def disable_gap_commits() -> None:
    """Never commit offsets that were not processed: turn off Faust's "gap" bookkeeping.

    Faust's consumer (``Consumer._drain_messages``) treats a jump between the last offset it read and the
    next one as a gap (compacted records, transaction markers) and lets the committer skip over it as if
    acked. Its "last offset read" is reset by the seek to the committed offset after every assignment,
    while records fetched before the seek (in the consumer thread) still arrive: the next record is then
    hundreds of offsets ahead, Faust records a gap over records that were never processed, and the next
    commit skips them. Measured: in the scale-out test (a worker joining and leaving mid-stream) 5-200 of
    300 customers lost events in half of the runs, every loss inside a recorded gap (e.g. a new owner
    sought ``login/0`` to 769, then saw 1071 and committed 1072).

    Without gaps, a commit advances over consecutive acked offsets only. A single missing offset (a
    transaction control marker of a transactional upstream producer) is still passed, because Faust
    compares the first acked offset with the committed one; longer holes (a compacted input topic, which
    tierstream's input topics are not) would hold the partition's commits back until the next rebalance:
    records are then re-read, never skipped, and de-duplication absorbs them. Holes that
    :class:`streams.offsets.OffsetGuard` has verified as real are handed to the original bookkeeping
    (``_tierstream_add_gap``), so that commits pass them.
    """
    from faust.transport import consumer as faust_consumer

    cls = faust_consumer.Consumer
    if getattr(cls, "_tierstream_no_gaps", False):
        return

    async def no_gap(self: object, tp: object, offset_from: int, offset_to: int) -> None:
        return None

    cls._tierstream_add_gap = cls._add_gap  # type: ignore[attr-defined]  # for holes verified as real
    cls._add_gap = no_gap  # type: ignore[method-assign,assignment]
    cls._tierstream_no_gaps = True  # type: ignore[attr-defined]


class _NoReadOffsets(dict):  # type: ignore[type-arg]
    """Faust's per-partition "last offset read", always unknown (see :func:`deliver_every_record`)."""

    def __getitem__(self, key: object) -> None:
        return None


def deliver_every_record() -> None:
    """Make Faust's consumer hand over every fetched record, whatever it read before.

    Faust's drain loop drops a record whose offset is below the last one it read ("DROPPED MESSAGE
    ROFF"). After :class:`streams.offsets.OffsetGuard` seeks a partition back to records Faust skipped,
    records fetched before that seek still arrive first and move that mark past the re-fetched ones, which
    were then dropped for good (measured: a partition stalled after a seek back in the scale-out test).
    Ordering and de-duplication by offset are the guard's job: Faust's mark is made to read as unknown,
    which also keeps its gap detection (driven by the same mark) from ever firing.
    """
    from faust.transport import consumer as faust_consumer

    cls = faust_consumer.Consumer
    if getattr(cls, "_tierstream_every_record", False):
        return
    original_init = cls.__init__

    def init(self: object, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        self._read_offset = _NoReadOffsets()  # type: ignore[attr-defined]

    cls.__init__ = init  # type: ignore[method-assign]
    cls._tierstream_every_record = True  # type: ignore[attr-defined]


def deliver_without_tasks() -> None:
    """Hand each fetched record to the conductor without creating tasks for it, when nothing can block.

    Faust's drain loop (``Consumer._drain_messages``) delivers every record through
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record,
    so that a delivery blocked on a full queue or on suspended flow control is abandoned when a rebalance
    begins. Measured with bench/bench_throughput.py: the worker received records at ~10,000/s however idle
    it was, which capped its throughput below what its batch core does. Here the loop waits until the
    delivery cannot block (flow control active and the producer buffer below its limit:
    ``app.tierstream_can_deliver()``), so the callback completes without suspending and records are
    delivered in offset order; once a rebalance has begun (``suspend_flow``), Faust's original path runs.
    Apps without the predicate keep the original loop.

    Records of the topics in ``app.tierstream_direct`` (topic names, queue, ``can_receive``) skip the
    conductor too and go straight into that queue (the raw source's: its only subscriber, and its
    ``decode`` is the identity) once ``can_receive()`` (flow control active, room in the queue). The
    conductor's per-record path (a lock, two awaited flow checks, the producer buffer's size read twice
    through Faust's settings object, an awaited decode, pressure callbacks) was 17 % of the worker's
    samples on a backlog (py-spy, bench/bench_throughput.py --profile, session 8).
    """
    from faust.transport import consumer as faust_consumer

    cls = faust_consumer.Consumer
    if getattr(cls, "_tierstream_fast_drain", False):
        return
    original = cls._drain_messages

    async def drain(self: Any, fetcher: Any) -> None:  # the loop of faust 0.15.3, one branch changed
        can_deliver = getattr(self.app, "tierstream_can_deliver", None)
        if can_deliver is None:
            await original(self, fetcher)
            return
        callback = self.callback
        direct_topics, direct_queue, can_receive = getattr(
            self.app, "tierstream_direct", (frozenset(), None, None))
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspended = self.suspend_flow.is_set
        commit_every = self._commit_every
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > 100:
                        await sleep(0)
                        num_since_yield = 0
                    # (the read-offset and gap checks of the original are off: deliver_every_record,
                    # disable_gap_commits)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    # Wait for room here, in order: handed to a full queue, the conductor puts the record
                    # from a background task, and a later record delivered meanwhile overtakes it. The
                    # offset guard then sees a hole that is not one (streams.offsets): a seek back at best,
                    # and a later record arriving between the hole and the one that revealed it would make
                    # the guard accept the hole as real.
                    direct = tp.topic in direct_topics
                    ready = can_receive if direct else can_deliver
                    while not suspended() and not ready():
                        await sleep(0.001)
                    if not suspended():
                        if direct:
                            direct_queue.put_nowait(message)  # refcount 0: the worker's one ack is final
                        else:
                            await callback(message)
                    else:  # a rebalance began: Faust's own path (the record is dropped, fetched again)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    cls._drain_messages = drain  # type: ignore[method-assign]
    cls._tierstream_fast_drain = True  # type: ignore[attr-defined]


def track_end_offsets_per_fetch() -> None:
    """Record each partition's end offset once per fetch, not once per record.

    Faust's ``Consumer.getmany`` reads the partition's high watermark and sets the Prometheus sensor's
    end-offset gauge (a ``labels()`` lookup and a locked ``set``) for every record it yields. Both are the
    same for every record of one partition in one fetch: the high watermark comes with the fetch response.
    Measured with bench/bench_throughput.py --profile (one policy, 4,800 customers, session 13): 7.8 % of
    the worker's own process, for a gauge that a scrape reads every 15 s.

    The loop is faust 0.15.3's, with the tracking moved before it; records are yielded in the same
    (round-robin) order, under the same flow and generation checks. The gauge can differ in two ways, both
    harmless for a lag gauge that nothing else reads (the worker's own lag gauges ask the consumer): it
    can be one fetch older (Faust reads the high watermark again at each record, and the consumer thread
    may have fetched meanwhile), and a partition is tracked even when a rebalance stops the delivery
    before its records.
    """
    from faust.transport import consumer as faust_consumer

    cls = faust_consumer.Consumer
    if getattr(cls, "_tierstream_end_offsets_per_fetch", False):
        return

    async def getmany(self: Any, timeout: float) -> Any:
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return
        buffered = self._buffered_partitions

        def wanted(tp: Any) -> bool:
            return active_partitions is None or tp in active_partitions or tp in buffered

        track = self.app.monitor.track_tp_end_offset
        highwater = self.highwater
        for tp in records:
            if wanted(tp):
                track(tp, highwater(tp))
        to_message = self._to_message
        app = self.app
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active:
                break
            if app.consumer_generation_id != generation_id:
                self.log.dev("Generation id changed from %r to %r. Cancelling getmany.",
                             generation_id, app.consumer_generation_id)
                break
            if wanted(tp):
                yield tp, to_message(tp, record)

    cls._tierstream_original_getmany = cls.getmany  # type: ignore[attr-defined]  # for the equivalence test
    cls.getmany = getmany  # type: ignore[method-assign,assignment]
    cls._tierstream_end_offsets_per_fetch = True  # type: ignore[attr-defined]
