"""Faust binding of the batch core: turns consumed messages into batches (of
:class:`~streams.batch.InRecord`, or of record tuples for the decision processes: :func:`to_row`) and
carries out the :class:`~streams.batch.Outbox` in crash-safe order.

Order of effects per batch (see streams.batch for why):
1. state table writes: the store at once, the changelog records in bulk (:mod:`streams.bulk`, record
   batches of up to 512 KiB per partition) submitted; the decay schedule. Then the batch's :class:`Tail` runs in the
   background while the next batch is decided (:meth:`Worker.follow`), one tail at a time, in batch order:
2. it waits until the broker has the changelog records, so the changelog is durable before anything
   downstream can see a decision (with the embedded broker's one-record-per-batch work-around: Faust's
   table writes and ``producer.flush()``);
3. tier changes and snapshot records handed to the producer in bulk, and, in the same round trip, the
   Redis read model, records and ledger (the writer buffers and retries on its own when Redis is down);
   the tail ends once the broker has acknowledged the tier changes, and the batch's input is acked
   (in batch order: see streams.topology). Dead letters, repartitioned records and notices go through
   Faust's buffer, which Faust flushes before it commits offsets;
4. metrics. Offsets commit later, over acked records only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.streams import _current_event
from faust.types import TP, Message
from pydantic import BaseModel

from schemas.admin import TierAtRisk
from schemas.outputs import dlq_headers
from streams import metrics
from streams.batch import BatchProcessor, InRecord, Outbox
from streams.bulk import BulkProducer, Submitted
from streams.decision_process import DecisionPool, PreparedRows, RecordTuple, States, loader
from streams.due import DueIndex
from streams.encoded import Encoded, EncodedChange, encode_outputs
from streams.gauges import PartitionGauges
from streams.offsets import OffsetGuard
from streams.stalls import Probe, StallWatch
from streams.topics import Topics
from tierstream.readmodel.writer import ReadModelWriter

log = logging.getLogger("tierstream.worker")


class PartitionEvent:
    """Stand-in for a Faust event of one partition: all the table store reads from the current event is
    ``message.partition``. Batch processing has no per-record Faust event, so table reads and writes of a
    customer run in the context of its partition's stand-in."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, partition: int) -> None:
        self.message = type("PartitionMessage", (), {"partition": partition, "topic": None})()


@contextlib.contextmanager
def event_context(event: PartitionEvent) -> Iterator[None]:
    """Make ``event`` Faust's current event, so table reads and writes go to its partition's store and
    changelog partition (Faust's RocksDB store picks the partition database from the current event)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def partition_databases(table: faust.Table) -> Callable[[int], Any] | None:  # type: ignore[type-arg]
    """``partition -> database`` of a table kept in Faust's RocksDB store (one database per partition, keyed
    by the record key, as the store's own event-scoped reads and writes use them), or None for any other
    store or table layout (memory store, global tables, custom partitioners): those go through Faust."""
    store = table.data
    db_for = getattr(store, "_db_for_partition", None)
    if db_for is None or table.is_global or table.use_partitioner or not hasattr(store, "_key_index"):
        return None
    return db_for  # type: ignore[no-any-return]


def to_record(msg: Message) -> InRecord:
    """The broker-level view of a consumed message (raw key and value bytes): :func:`to_row` as a record."""
    return InRecord(*to_row(msg))


def _partition_state(consumer: object, tp: object) -> Any:
    """aiokafka's state of ``tp`` in Faust's consumer (position, high watermark, paused), read without
    awaiting: ``consumer.position`` waits for a position that may never come, which is what a stall is."""
    try:
        aiokafka = consumer._thread._consumer  # type: ignore[attr-defined]
        assignment = aiokafka._subscription.subscription.assignment
        return assignment.state_value(tp) if assignment is not None else None  # aiokafka's TopicPartitionState
    except Exception:  # not started, stopping, or tp no longer assigned
        return None


def _fetcher_view(consumer: object, tp: object) -> dict[str, object]:
    """For the stall log: whether aiokafka holds fetched records of ``tp`` it has not handed over, whether
    it or Faust has ``tp`` paused. Each is what would keep a partition from being fetched again."""
    view: dict[str, object] = {}
    with contextlib.suppress(Exception):
        view["fetched_unread"] = tp in consumer._thread._consumer._fetcher._records  # type: ignore[attr-defined]
        view["paused"] = _partition_state(consumer, tp).paused
        view["faust_active"] = tp in consumer._active_partitions  # type: ignore[attr-defined]
    return view


def to_row(msg: Message) -> RecordTuple:
    """:func:`to_record` as the tuple the decision processes take (streams.decision_process.RecordTuple):
    a batch decided there needs no :class:`InRecord` (40,000 of them and their packing took ~0.07 s of this
    process per backlog batch, with the decision processes idle: session 15)."""
    value = msg.value
    return (msg.topic, msg.partition, msg.offset, msg.key,
            value if isinstance(value, bytes) else bytes(value or b""), msg.timestamp)


def read_states(keys: Set[tuple[bytes | None, int]], load: Callable[[str, int], bytes | None]) -> States:
    """Read now, with ``load``, the stored state of every customer that records with these (distinct)
    ``(key, partition)`` may touch: ``{(customer, partition): bytes or None}``.

    A record is decided only for the customer of its key on its own partition (streams.batch routes any
    other to the repartition topic or the dead letters, unread), so the keys name every state needed."""
    states: States = {}
    for key, partition in keys:
        if key is None:
            continue
        try:
            customer_id = key.decode()
        except UnicodeDecodeError:
            continue  # no event's customer id: the record is dead-lettered or repartitioned
        states[(customer_id, partition)] = load(customer_id, partition)
    return states


def read_ahead(records: Sequence[InRecord], load: Callable[[str, int], bytes | None]
               ) -> Callable[[str, int], bytes | None]:
    """A loader answering from the states :func:`read_states` reads now (a batch decided in steps must not
    read the store in between: streams.worker.Worker._handle). It raises ``LookupError`` for any
    (customer, partition) not read: a bug, never a silent miss."""
    return loader(read_states({(r.key, r.partition) for r in records}, load))


class Worker:
    """Holds the app's topics, table, processor and read-model writer; ``handle`` processes one batch."""

    def __init__(
        self, app: faust.App, processor: BatchProcessor, topics: Topics, writer: ReadModelWriter,
        *, bulk: bool = False, decisions: DecisionPool | None = None,
    ) -> None:
        """``bulk``: produce changelog records and tier changes in record batches of up to 512 KiB per partition
        (:mod:`streams.bulk`); only where producers may batch (not with the embedded broker's
        one-record-per-batch work-around). ``decisions``: decide batches, and customers due for
        re-scoring, in those child processes (:mod:`streams.decision_process`) rather than in this one's event
        loop."""
        self.app = app
        self.table = app.state_table  # type: ignore[attr-defined]
        self.processor = processor
        self.decisions = decisions
        self.writer = writer
        self.gauges = PartitionGauges(processor.partitions, tuple(p.id for p in processor.policies))
        self.due = DueIndex()
        self.watermarks: dict[int, datetime] = {}  # partition -> newest event time seen (the decay clock)
        self.owned: set[int] = set()
        self._partition_events = {p: PartitionEvent(p) for p in range(processor.partitions)}
        # One batch or decay run at a time: both read-modify-write customer state across an await.
        self.lock = asyncio.Lock()
        # The last batch's tail (its outputs, then its acks) while it runs in the background: see follow().
        self._tail: asyncio.Future[bool] | None = None
        # Batches and decay wait for this: set once the current assignment's policy rollout is planned and
        # allowed (streams.rollout.Rollout.after_rebalance); cleared at every assignment.
        self.gate = asyncio.Event()
        self.offsets = OffsetGuard()
        self.stalls = StallWatch()
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.tier_changes = app.topic(topics.tier_changes, **raw)
        self.dead_letters = app.topic(topics.dead_letters, **raw)
        self.repartition = app.topic(topics.repartition, **raw)
        self.admin = app.topic(topics.admin_commands, **raw)
        self.proposals = app.topic(topics.tier_proposals, **raw)
        self.at_risk = app.topic(topics.tier_at_risk, **raw)
        self.audit = app.topic(topics.admin_audit, **raw)
        # Compaction keeps the latest record per key: on real Kafka the topic is created compacted
        # (deploy/); the embedded broker accepts the setting but never compacts (BROKER-NOTES.md).
        self.snapshot = app.topic(topics.customer_tiers, config={"cleanup.policy": "compact"}, **raw)
        self.use_bulk = bulk
        self._bulk: BulkProducer | None = None  # created on first use: the producer starts with the app

    def epoch(self) -> int | None:
        """The consumer generation whose records may be applied now, or ``None`` while none may.

        Faust's own rule for stale records (``faust.streams.Stream``): a record is skipped when flow
        control is suspended (from the start of a revocation until the new assignment has recovered) or
        its ``generation_id`` is not the app's current consumer generation. Faust's ``wait_empty`` does
        not see our batches, so we apply the rule ourselves: on revocation Faust's RocksDB store drops the
        partition's database and its consumer forgets the partition's acks, so a batch or decay run of an
        older generation must neither write state (it could put a stale or empty customer into the
        changelog the new owner recovers from) nor ack. Its records are re-delivered from the committed
        offset after the new assignment (to this worker or another), and de-duplication absorbs what was
        applied already. Regression: a worker joining and leaving mid-stream lost events (CI run of
        test_scale_out).

        A stopping worker applies nothing either: Faust's revocation on shutdown returns at once without
        suspending flow, so queued records would otherwise still be applied after the group has handed
        the partitions over, and their late changelog records would overwrite the new owner's (measured:
        one customer's login lost in the scale-out test, the stopping worker's write landing last)."""
        app = self.app
        if app.should_stop or not app.flow_control.is_active():
            return None
        return app.consumer_generation_id

    def current(self, epoch: int | None) -> bool:
        """Whether records of generation ``epoch`` may still be applied and acked."""
        return epoch is not None and epoch == self.epoch()

    def prepare(self, messages: Sequence[Message]) -> PreparedRows | None:
        """What of ``messages``' decision needs neither the store nor this worker's state: their records as
        the decision processes take them, split and pickled (:meth:`DecisionPool.prepare`); None without
        decision processes. A pure function of the messages, so the batch loop makes it while the batch before
        is decided (streams.pipeline); :meth:`handle` uses it if it admits every message."""
        if self.decisions is None:
            return None
        return self.decisions.prepare([to_row(m) for m in messages])

    async def handle(self, messages: Sequence[Message], finished: Callable[[Sequence[Message]], None],
                     prepared: PreparedRows | None = None, sent: Callable[[], None] | None = None) -> bool:
        """Decide one batch of messages, write its states and start its :class:`Tail` (:meth:`follow`), which
        calls ``finished`` with the messages to ack once the batch's outputs are out (the caller acks them
        if ``current(generation)`` still holds). Returns when the previous batch's tail has ended too, so at
        most one tail runs beside the next batch's decisions. False when nothing is to be acked: the batch
        holds records of an older consumer generation (or flow control is suspended), a rebalance began
        while it was decided (then nothing was applied), or the offset guard admitted none of its records.
        ``prepared``: :meth:`prepare` of ``messages``, used if the offset guard admits all of them; ``sent``:
        called once the batch is on its way to the decision processes (not at all when it does not go there).

        Records are applied in offset order per partition, none skipped (:class:`streams.offsets.
        OffsetGuard`): re-deliveries are dropped, records behind a hole are held back (not acked) and the
        consumer is sought back to fetch the hole. Customers the batch made due are re-scored by
        :meth:`run_due` (a 1 s timer)."""
        # Closed from an assignment until its rollout plan passed the guard (streams.rollout); a batch
        # that waits here across a rebalance is stale when it gets through, and dropped below.
        await self.gate.wait()
        async with self.lock:
            epoch = self.epoch()
            if epoch is None or any(m.generation_id != epoch for m in messages):
                self._stale(len(messages), messages[0].generation_id, epoch)
                return False
            consumer = self.app.consumer
            admission = self.offsets.admit(messages, epoch, self.start_offset)
            previous = None
            if admission.admitted:
                # The guard admits in order, so with nothing dropped the admitted records are the batch's.
                tail = await self._handle(admission.admitted, epoch, None if admission.dropped else prepared, sent)
                if tail is None:
                    return False  # a rebalance began while the batch was decided: nothing was applied
                # Registered under the lock: a decay or re-scoring run that takes it next waits for this tail.
                previous = self.follow(tail, finished)
            if admission.dropped:
                metrics.RECORDS_HELD_BACK.inc(admission.dropped)
            await self._realign(consumer, admission.reseek, admission.accepted_gaps)
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        return bool(admission.admitted)

    @staticmethod
    def _stale(records: int, generation: int | None, current: int | None) -> None:
        metrics.STALE_BATCHES.inc()
        log.info("batch of an earlier consumer generation dropped (re-delivered from the commit)",
                 extra={"records": records, "generation": generation, "current": current})

    def start_offset(self, tp: object) -> int:
        """Where input partition ``tp``'s records start in this generation: the committed offset, or 0 when
        nothing was committed (``consumer_auto_offset_reset="earliest"``). The offset guard expects it and
        streams.topology seeks every input partition to it after each rebalance.

        Faust's ``_committed_offset`` omits partitions without a commit (and a commit of 0), and after a
        rebalance only partitions with one are sought: the others keep fetching from where the consumer
        thread stood, past records Faust dropped meanwhile (streams.topology now seeks every input
        partition to its commit, or 0, after every rebalance). Taking the first record seen as the start,
        the offset guard could not see such a hole (the kill -9 test lost events of up to 93 customers).
        With 0 as the start it seeks back; where a log really starts later (retention on Kafka), the
        re-fetch proves the hole real and it is accepted (streams.offsets)."""
        return self.app.consumer._committed_offset.get(tp) or 0  # type: ignore[attr-defined,no-any-return]

    async def _realign(
        self, consumer: object, reseek: Mapping[object, int], gaps: Mapping[object, tuple[int, int]]
    ) -> None:
        """Seek partitions back to their first skipped offset; hand holes accepted as real to Faust's
        commit bookkeeping (``streams.faust_patches.disable_gap_commits`` keeps the original)."""
        for tp, offset in reseek.items():
            metrics.INPUT_RESEEKS.inc()
            log.warning("input records were skipped: seeking back",
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": offset})  # type: ignore[attr-defined]
            try:
                await consumer.seek(tp, offset)  # type: ignore[attr-defined]
            except Exception:
                # revoked meanwhile (the next owner starts from the commit) or consumer stopping
                log.exception("seeking back failed", extra={"partition": tp.partition})  # type: ignore[attr-defined]
        for tp, (first_missing, first_present) in gaps.items():
            metrics.INPUT_GAPS_ACCEPTED.inc()
            await consumer._tierstream_add_gap(tp, first_missing, first_present - 1)  # type: ignore[attr-defined]

    async def unstall(self, partitions: Sequence[object], idle: Callable[[], bool]) -> dict[object, int]:
        """Seek input ``partitions`` (this worker's, now) that the consumer stopped delivering back to the next
        offset to apply (:mod:`streams.stalls`); ``idle()``: whether the source queue is empty (asked once
        no batch is running). Returns the seeks made.
        Does nothing while records may not be applied (rebalancing, stopping, rollout gate shut): then the
        partitions wait on purpose."""
        if not self.gate.is_set():
            return {}
        async with self.lock:
            epoch = self.epoch()
            if epoch is None:
                return {}
            guard = self.offsets
            known = guard.expected if guard.generation == epoch else {}
            probes = {tp: probe for tp in partitions if (probe := self._probe(tp, known)) is not None}
            seeks = self.stalls.check(probes, idle())
            consumer = self.app.consumer
            for tp, offset in seeks.items():
                metrics.INPUT_STALLS.inc()
                probe = probes[tp]
                log.warning("input partition stalled behind its end: seeking it again", extra={
                    "topic": tp.topic, "partition": tp.partition, "offset": offset,  # type: ignore[attr-defined]
                    "position": probe.position, "highwater": probe.highwater, "seeks": self.stalls.seeks(tp),
                    **_fetcher_view(consumer, tp)})
                try:
                    await consumer.seek(tp, offset)  # type: ignore[attr-defined]
                except Exception:
                    log.exception("seeking a stalled partition failed", extra={"partition": tp.partition})  # type: ignore[attr-defined]
            return seeks

    def _probe(self, tp: object, known: Mapping[object, int]) -> Probe | None:
        """The stall watch's view of input partition ``tp``; None when the consumer does not hold it."""
        state = _partition_state(self.app.consumer, tp)
        if state is None:
            return None
        expected = known.get(tp)
        return Probe(expected=self.start_offset(tp) if expected is None else expected,
                     position=state._position, highwater=state.highwater)

    async def run_due(self) -> None:
        """Re-score customers whose due time the decay clock has passed (called by a timer too, so a
        partition that has gone quiet still decays up to its last event time)."""
        async with self.lock:
            # The due index and the stored states are the last batch's already (both are written before its
            # tail starts), so the due customers are decided while that tail runs, and their outputs leave
            # after its outputs (carry_out settles first: a decay's tier change of a customer comes after the
            # batch's own, in sequence order). Settling here, before deciding, kept the decision processes
            # idle for a tail's length between every two backlog batches (~0.15 s of ~1.5 s, session 15).
            await self._run_due()

    async def _handle(self, messages: Sequence[Message], epoch: int, prepared: PreparedRows | None = None,
                      sent: Callable[[], None] | None = None) -> Tail | None:
        """Decide one admitted batch of generation ``epoch`` (``prepared``: :meth:`prepare` of exactly these
        messages, or None; ``sent``: see :meth:`handle`) and write its states (the store now, the changelog
        records submitted); returns the :class:`Tail` that carries out the rest. None when a rebalance began
        while the batch was decided: then nothing of it was applied, and the offset guard has forgotten it.

        The batch is decided in steps with the loop running in between (:meth:`_decide`): a backlog batch
        is seconds of work, during which health checks, metric scrapes, timers, Faust's rebalance callbacks
        and the previous batch's tail must still run. So every state the batch needs is read first
        (:meth:`preload`: Faust closes a revoked partition's database when a rebalance begins), and the
        generation is checked again before anything is written."""
        started = time.perf_counter()
        sizes: dict[str, int] = {}
        now = datetime.now(UTC)
        bulk = await self.bulk()
        if self.decisions is not None:
            # The same outbox, decided on other cores while this loop runs the previous batch's tail; its
            # tier changes and read-model records come encoded (streams.encoded).
            batch = prepared if prepared is not None else self.prepare(messages)
            assert batch is not None  # prepare gives None only without decision processes
            states = read_states(batch.keys, self.loader(sizes))
            out, encoded = await self.decisions.decide_rows(batch, states, now, sent)
        else:
            records = [to_record(m) for m in messages]
            out = await self._decide(records, self.preload(records, sizes), now)
            encoded = encode_outputs(out)
        if not self.current(epoch):
            # Nothing was written: its records come again from the commit, to this worker or another.
            self.offsets.forget(epoch)
            self._stale(len(messages), epoch, self.epoch())
            return None
        # From the check to the state writes nothing awaits: the store is written in the generation that read it.
        self._write_states(out.state_writes, bulk)
        # The changelog records leave now, while the previous batch's tail finishes; this batch's outputs
        # wait for their acknowledgement (Tail.finish).
        changelog = await bulk.submit() if bulk is not None else None
        # The decay schedule and gauges now, under the lock: a decay run reads both (its outputs wait for this
        # batch's tail: carry_out).
        self.schedule(out)
        self.gauges.on_batch(out, sizes, out.moves)
        # The tail needs none of the encoded states (the changelog builders hold their copies): not kept
        # alive beside the next batch's (about 2 kB per customer, up to 20,000 customers a batch).
        out.state_writes = {}
        return Tail(self, messages, out, encoded, bulk, changelog, now, started, epoch)

    def follow(self, tail: Tail, finished: Callable[[Sequence[Message]], None]) -> asyncio.Future[bool] | None:
        """Carry out ``tail`` in the background once the tail in flight (if any) has ended, then call
        ``finished`` with its messages (to ack them). Returns that previous tail: :meth:`handle` waits for it
        before it takes the next batch. ``tail`` is the one in flight from now on (:meth:`settle` waits for
        it), whether or not it has started.

        Why: once a batch's states are written, what is left is mostly waiting: for the broker to
        acknowledge its changelog records, then its tier changes, and for Redis. The next batch is decided
        meanwhile (it reads the states this one wrote), so the worker's one core is not idle for those
        round trips. What stays in order: tails run one at a time in batch order (outputs of a customer
        leave in decision order; acks are in batch order, which Faust's commit needs); within a batch,
        states before outputs (Tail.finish); decay and policy re-scoring settle before anything of theirs
        leaves (carry_out). At most one tail runs beside a batch being decided, so a kill -9 can leave the
        outputs of one more batch unsent than before: streams.decide keeps that many more for re-emission
        (REEMIT_KEEP).

        A tail that fails crashes the app (at-least-once: its records were not acked, so they come again,
        and the states written meanwhile make them duplicates whose outputs are re-emitted); the tails
        after it then do nothing.

        Why chained at once rather than started after awaiting the previous one: the tail must be the one
        in flight as soon as its batch's states are written. Started later, a decay run taking the lock in
        between would find only the previous tail to wait for, and could send a customer's decay tier
        change before the batch's own change of that customer (sequence n + 1 before n)."""
        previous = self._tail
        self._tail = asyncio.ensure_future(self._finish(previous, tail, finished))
        return previous

    async def settle(self) -> None:
        """Wait until the batch tail in flight, if any, has finished (its outputs out, its records acked)."""
        tail = self._tail
        if tail is not None and not tail.done():
            await asyncio.wait([tail])

    async def _finish(self, previous: asyncio.Future[bool] | None, tail: Tail,
                      finished: Callable[[Sequence[Message]], None]) -> bool:
        """Run ``tail`` after ``previous``; whether it ended well (the next tail runs only then)."""
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                return False  # the previous tail failed (the app is crashing) or was cancelled: nothing more leaves
        try:
            messages = await tail.finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("carrying out a batch's outputs failed")
            await self.app.crash(exc)
            return False
        finished(messages)
        return True

    async def _decide(self, records: Sequence[InRecord], load: Callable[[str, int], bytes | None],
                      now: datetime) -> Outbox:
        """``processor.process(records, load, now)``, letting the loop run between its steps (~10 ms
        each: streams.batch.BatchProcessor.steps)."""
        steps = self.processor.steps(records, load, now)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            await asyncio.sleep(0)

    def preload(self, records: Sequence[InRecord], sizes: dict[str, int]) -> Callable[[str, int], bytes | None]:
        """:func:`read_ahead` from the store (records each state's size in ``sizes``)."""
        return read_ahead(records, self.loader(sizes))

    def _emit(self, out: Outbox, encoded: Encoded, bulk: BulkProducer | None) -> int:
        """Hand tier changes and snapshot records (``encoded``: ``out``'s), lifecycle notices and audit records
        to the producer (tier changes and snapshot records to ``bulk`` when given); returns how many."""
        tier_changes = self.tier_changes.get_topic_name()
        changes = encoded.changes
        moves: dict[tuple[str, str, str, str], int] = {}  # counted first: one labels() lookup per series
        for change in changes:
            if bulk is not None:
                bulk.add_keyed(tier_changes, change.customer_id.encode(), change.wire)
            else:
                self.tier_changes.send_soon(key=change.customer_id.encode(), value=change.wire)
            series = (change.policy, change.from_tier or "", change.to_tier, change.cause)
            moves[series] = moves.get(series, 0) + 1
        for series, n in moves.items():
            metrics.TIER_CHANGES.labels(*series).inc(n)
        for notice in out.notices:
            topic = self.at_risk if isinstance(notice, TierAtRisk) else self.proposals
            self.send_model(topic, notice.customer_id, notice)  # type: ignore[attr-defined]
            metrics.TIER_NOTICES.labels(notice.policy, type(notice).__name__).inc()  # type: ignore[attr-defined]
        for result in out.audit:
            self.send_model(self.audit, result.customer_id, result)
            metrics.ADMIN_COMMANDS.labels(result.command, str(result.accepted).lower()).inc()
        for policy, n in out.flip_flops.items():
            metrics.TIER_FLIP_FLOPS.labels(policy).inc(n)
        for policy, n in out.elided.items():
            metrics.POLICY_DECISIONS_ELIDED.labels(policy).inc(n)
        for labels, n in out.shadow_evaluations.items():
            metrics.SHADOW_EVALUATIONS.labels(*labels).inc(n)
        for labels, n in out.shadow.items():
            metrics.SHADOW_DIFFERENCES.labels(*labels).inc(n)
        # the snapshot follows tier changes and overrides, not every score refresh (streams.encoded)
        snapshot = self.snapshot.get_topic_name()
        for key, value in encoded.snapshots:
            if bulk is not None:
                bulk.add_keyed(snapshot, key, value)
            else:
                self.snapshot.send_soon(key=key, value=value)
        return len(changes) + len(out.notices) + len(out.audit)

    @staticmethod
    def send_model(topic: faust.TopicT, customer_id: str, model: BaseModel) -> None:
        """Produce a pydantic output model as JSON keyed by ``customer_id`` (buffered, not awaited)."""
        topic.send_soon(key=customer_id.encode(), value=orjson.dumps(model.model_dump(mode="json", by_alias=True)))

    def loader(self, sizes: dict[str, int]) -> Callable[[str, int], bytes | None]:
        """A state loader reading each customer from its partition's store; records the stored sizes."""
        table = self.table
        db_for = partition_databases(table)
        if db_for is not None:
            # One database read per customer. Faust's ``table.get`` makes two (``key in store``, then
            # ``store[key]``), each finding the partition's database from the current event, plus a sensor
            # call: 9 % of the worker's samples at 50,000 customers (py-spy), for the same bytes.
            def load_direct(customer_id: str, partition: int) -> bytes | None:
                raw = db_for(partition).get(customer_id.encode())
                sizes[customer_id] = len(raw) if raw else 0
                return raw  # type: ignore[no-any-return]

            return load_direct
        contexts = self._partition_events

        def load(customer_id: str, partition: int) -> bytes | None:
            with event_context(contexts[partition]):
                raw = table.get(customer_id.encode())
            sizes[customer_id] = len(raw) if raw else 0
            return raw

        return load

    def schedule(self, out: Outbox) -> None:
        """Advance owned partitions' decay clocks and schedule the due times ``out`` carries."""
        for partition, mark in out.watermarks.items():
            if partition in self.owned and (partition not in self.watermarks or mark > self.watermarks[partition]):
                self.watermarks[partition] = mark
        for customer_id, (partition, due) in out.due.items():
            if partition in self.owned:
                self.due.schedule(partition, customer_id, due)

    async def _run_due(self, limit: int = 2000, rounds: int = 50) -> None:
        """Output first, then state: a decay decision is a pure function of the stored state and its due
        time, so if we crash before the state write, the restarted worker finds the customer due again
        and emits the identical change (same sequence, same change_id).

        All rounds are decided in memory (a customer due again before the clock reads the state the
        previous round produced), then carried out together: one flush, one set of state writes, one
        Redis write, however many customers were due."""
        epoch = self.epoch()
        if epoch is None or not self.gate.is_set():
            return  # rebalancing, or a policy rollout is being planned or was refused
        sizes: dict[str, int] = {}
        stored = self.loader(sizes)
        decided: dict[str, tuple[int, bytes]] = {}

        def load(customer_id: str, partition: int) -> bytes | None:
            hit = decided.get(customer_id)
            return hit[1] if hit is not None else stored(customer_id, partition)

        now = datetime.now(UTC)
        total = Outbox()
        encoded: list[Encoded] = []
        for _ in range(rounds):
            due = [(c, p, at) for p, mark in list(self.watermarks.items())
                   for c, at in self.due.pop_due(p, mark, limit)]
            if not due:
                break
            if self.decisions is not None and len(due) >= self.decisions.min_records:
                # Decided on the children's cores, as batches are: with a backlog the decay clock runs fast
                # and this was a quarter of this process with eleven presets (docs/performance.md, session
                # 13). The states are read now, before the await (a rebalance closes revoked partitions'
                # stores); a customer due again in a later round reads the state this round decided.
                states = {(c, p): load(c, p) for c, p, _ in due}
                out, round_encoded = await self.decisions.decay(due, states, now)
                if not self.current(epoch):
                    return  # a rebalance began meanwhile: the partitions' owners find these customers due again
            else:
                out = self.processor.decay(due, load, now)
                round_encoded = encode_outputs(out)
            encoded.append(round_encoded)
            decided.update(out.state_writes)
            self.schedule(out)
            total.merge(out)
        if decided:
            total.state_writes = decided
            await self.carry_out(total, sizes, epoch, encoded=Encoded.joined(encoded))

    async def carry_out(
        self, out: Outbox, sizes: Mapping[str, int], epoch: int, then: Callable[[], None] | None = None,
        encoded: Encoded | None = None,
    ) -> bool:
        """Carry out decisions taken from stored state (decay, policy rollout), output first: emit and write
        the read model (waiting for both), then, if generation ``epoch`` is still current, write the states
        (and call ``then``, in the same synchronous step) and gauges. Returns whether the states were
        written. ``encoded``: ``out``'s tier changes and read-model records, encoded already
        (streams.encoded.encode_outputs); else they are encoded here.

        Output first is what makes these re-runnable: the decision is a pure function of the stored state,
        so if we crash (or lose the partition) before the state write, the partition's owner decides again
        and emits the identical changes (same sequence, same change_id)."""
        await self.settle()  # the in-flight batch's outputs first: these may be of the same customers
        if not self.current(epoch):
            # The tail failed (the app is crashing: its batch's outputs never left, so these must not either:
            # a customer's n + 1 before its n), or a rebalance or stop began while it ran. Decided before the
            # tail ended (decay: Worker.run_due; rollout), so checked here, before anything leaves; the
            # customers are found due again (after the restart, or by the partitions' owners).
            return False
        bulk = await self.bulk()
        encoded = encode_outputs(out) if encoded is None else encoded
        emitted = self._emit(out, encoded, bulk)
        # The read model is an output here too, written before the state: written after it, a kill in
        # between would leave Redis one decision behind for good (the customer is no longer due, so nothing
        # decides again); written before, the re-run decides the same version and Redis refuses it.
        outputs = [self._write_read_model(encoded)]
        if emitted:
            outputs.append(self._send(bulk))
        await asyncio.gather(*outputs)
        if not self.current(epoch):
            return False  # a rebalance began while we awaited: the partitions' owners re-run these
        self._write_states({c: w for c, w in out.state_writes.items() if w[0] in self.owned}, bulk)
        if then is not None:
            then()
        if bulk is not None:
            await self._send(bulk)
        self.gauges.on_batch(out, sizes, out.moves)
        return True

    async def _write_read_model(self, encoded: Encoded) -> None:
        """Write ``encoded``'s read-model records and tier-ledger entries to Redis, both pipelines in one round
        trip (version-guarded and idempotent: their order is free). Never raises on Redis failure (the
        writer buffers and retries)."""
        await asyncio.gather(self.writer.write_records(encoded.records),
                             self.writer.write_ledger([c.ledger for c in encoded.changes]))

    async def bulk(self) -> BulkProducer | None:
        """A bulk collector of its own for one batch or decay run (None when records must go one per
        producer batch), ready for the output topics' keyed records (their partition counts known, fetched
        once). Its own, so a batch's tail and the next batch never share a record batch (:meth:`follow`)."""
        if not self.use_bulk:
            return None
        if self._bulk is None:
            bulk = BulkProducer(self.app.producer._ensure_producer())  # type: ignore[attr-defined]
            for topic in (self.tier_changes, self.snapshot):
                await bulk.partitions(topic.get_topic_name())
            self._bulk = bulk
        return self._bulk.fork()

    async def _send(self, bulk: BulkProducer | None) -> None:
        """Make everything produced so far durable on the broker: the bulk producer's batches (then record
        the state changelog's persisted offsets, as Faust's own changelog callback does), else Faust's
        producer buffer."""
        if bulk is None:
            await self.app.producer.flush()
            return
        self._persisted(await bulk.send())

    def _persisted(self, written: Mapping[tuple[str, int], int], epoch: int | None = None) -> None:
        """Record the state changelog's offsets the broker acknowledged (``written``: (topic, partition) ->
        last offset), as Faust's own changelog callback does. Not once a rebalance has begun after
        generation ``epoch`` (when given): Faust may have closed the partition's database by then, and
        recording less only makes a recovery read more of the changelog."""
        if epoch is not None and not self.current(epoch):
            return
        changelog = self.table.changelog_topic.get_topic_name()
        store = self.table.data
        for (topic, partition), offset in written.items():
            if topic == changelog and partition in self.owned:
                # Faust's recovery reads the changelog from here on: only offsets the broker acknowledged
                store.set_persisted_offset(TP(topic, partition), offset)

    def _write_states(self, writes: Mapping[str, tuple[int, bytes]], bulk: BulkProducer | None) -> None:
        """Write customer states (customer -> (partition, bytes)) to their partitions' stores and changelog:
        the changelog records go to ``bulk`` when given (sent when it is), else through Faust's table."""
        if bulk is None:
            for customer_id, (partition, data) in writes.items():
                self.write_in(partition, self.table, customer_id.encode(), data)
            return
        add = bulk.add
        changelog = self.table.changelog_topic.get_topic_name()
        store = self.table.data
        db_for = partition_databases(self.table)
        if db_for is not None:
            key_index = store._key_index  # type: ignore[attr-defined]
            for customer_id, (partition, data) in writes.items():
                key = customer_id.encode()
                db_for(partition).put(key, data)  # what the store's _set does, without finding the event
                key_index[key] = partition
                add(changelog, partition, key, data)
            return
        contexts = self._partition_events
        for customer_id, (partition, data) in writes.items():
            key = customer_id.encode()
            # the store picks the partition's database from the current event (streams.worker.event_context)
            with event_context(contexts[partition]):
                store[key] = data
            add(changelog, partition, key, data)

    def write_in(self, partition: int, table: faust.Table, key: bytes, value: bytes) -> None:  # type: ignore[type-arg]
        """Write ``key`` of ``table`` in ``partition``'s store and changelog partition."""
        with event_context(self._partition_events[partition]):
            table[key] = value

    def read_in(self, partition: int, table: faust.Table, key: bytes) -> bytes | None:  # type: ignore[type-arg]
        """Read ``key`` of ``table`` from ``partition``'s store."""
        with event_context(self._partition_events[partition]):
            return table.get(key)

    def assign(self, partitions: set[int]) -> None:
        """Partitions now owned: forget the decay schedule and clock of the others."""
        self.owned = set(partitions)
        self.due.drop_partitions(self.owned)
        self.watermarks = {p: m for p, m in self.watermarks.items() if p in self.owned}
        self.gauges.assign(self.owned)

    @staticmethod
    def _observe(out: Outbox, changes: Sequence[EncodedChange], messages: Sequence[Message], now: datetime,
                 started: float) -> None:
        for (kind, outcome), n in out.counts.items():
            metrics.EVENTS_CONSUMED.labels(kind, outcome).inc(n)
            if outcome == "duplicate":
                metrics.DUPLICATE_EVENTS.inc(n)
        wall = time.time()
        decided = now.timestamp()
        for change in changes:
            metrics.EVENT_TO_DECISION.observe(max(0.0, decided - change.ledger.score))  # score: effective_at
        if changes:
            oldest = min(m.timestamp for m in messages)
            metrics.ARRIVAL_TO_EMIT.observe(max(0.0, wall - oldest))
        metrics.LAST_EVENT_TIMESTAMP.set(wall)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_RECORDS.observe(len(messages))


class Tail:
    """What is left of a batch once its states are written (:meth:`Worker.follow` runs it): wait for its
    changelog records, then send its dead letters, re-routed records and outputs, write Redis, and count."""

    __slots__ = ("bulk", "changelog", "encoded", "epoch", "messages", "now", "out", "started", "worker")

    def __init__(self, worker: Worker, messages: Sequence[Message], out: Outbox, encoded: Encoded,
                 bulk: BulkProducer | None, changelog: Submitted | None, now: datetime, started: float,
                 epoch: int) -> None:
        """``encoded``: the batch's tier changes and read-model records (``out.tier_changes`` and
        ``out.read_model`` are not read: streams.encoded.encode_outputs); ``bulk``: the
        batch's own collector (its changelog records submitted as ``changelog``), or None on Faust's
        per-record path; ``now``: the batch's wall clock; ``started``: its perf_counter start."""
        self.worker = worker
        self.messages = messages
        self.out = out
        self.encoded = encoded
        self.bulk = bulk
        self.changelog = changelog
        self.now = now
        self.started = started
        self.epoch = epoch

    async def finish(self) -> Sequence[Message]:
        """Carry out the batch's outputs in crash-safe order (module docstring); returns its messages, to be
        acked once this returns (if their generation is still current)."""
        worker, out, bulk, now = self.worker, self.out, self.bulk, self.now
        # State first: nothing downstream sees a decision before the changelog holds the state it left.
        if self.changelog is not None:
            worker._persisted(await self.changelog.wait(), self.epoch)
        else:
            await worker.app.producer.flush()
        for dead in out.dead_letters:
            rec = dead.record
            worker.dead_letters.send_soon(
                key=rec.key,
                value=rec.value,
                headers=dlq_headers(dead.reason, dead.detail, rec.topic, rec.partition, rec.offset, now),
            )
            metrics.DEAD_LETTERS.labels(dead.reason).inc()
            log.warning(
                "dead letter",
                extra={"reason": dead.reason, "detail": dead.detail, "topic": rec.topic,
                       "partition": rec.partition, "offset": rec.offset},
            )
        for key, value in out.repartition:
            worker.repartition.send_soon(key=key, value=value)
        for key, value in out.readmin:
            worker.admin.send_soon(key=key, value=value)
        worker._emit(out, self.encoded, bulk)
        # Tier changes to the broker while Redis is written: both round trips at once. The batch is acked
        # after this returns, so its outputs must be acknowledged first.
        sent = await bulk.submit() if bulk is not None else None
        await worker._write_read_model(self.encoded)
        if sent is not None:
            await sent.wait()
        worker.gauges.on_offsets({(m.topic, m.partition): m.offset + 1 for m in self.messages})
        worker._observe(out, self.encoded.changes, self.messages, now, self.started)
        return self.messages
