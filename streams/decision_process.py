"""Batches decided in child processes, so that one worker uses more than one core.

The worker's batch core (:meth:`streams.batch.BatchProcessor.process`) is a pure function of the batch's
records, the stored states it reads and the wall clock: nothing in it reads the store, the broker or Redis,
and nothing it keeps between batches changes its result (its only memory is a cache of key partitions).
So it can run in other processes, and a batch can be split between them by customer. A
:class:`DecisionPool` does that, while the worker's own process carries out the previous batch's tail
(changelog acknowledgement, tier changes, Redis, acks: streams.worker.Tail), runs Faust and its web
server, and takes in the next records. With one process, all of that took turns with deciding on one
core (docs/performance.md, session 12). Customers due for re-scoring (decay, review dates:
:meth:`streams.batch.BatchProcessor.decay`, another pure function of the stored state) go to the children
the same way (:meth:`DecisionPool.decay`, session 13); policy re-scoring after a rollout stays in the
worker's process.

What crosses the pipe, pickled by the worker's loop itself (:func:`_packed`; a batch's records ahead of its
decision, :meth:`DecisionPool.prepare`): each part's records as plain tuples (or, for decay, its due customers as
``(customer, partition, due time)``), the states the worker read ahead for its customers
(``{(customer, partition): bytes | None}``) and the time; back comes the part's
:class:`~streams.batch.Outbox`, its dead letters as tuples, and its tier changes and read-model
records encoded (streams.encoded), as plain tuples (``Encoded.flat``: a named tuple pickles and loads
through interpreted Python, ~4 times the cost). The worker merges the parts' outboxes and does everything
else exactly as with an in-process decision, under the same lock and in the same order.

Invariants:
- **Same decisions.** Every record of a key goes to the same part, in arrival order (:func:`split`), and
  a record is decided only for the customer of its key; so the merged outbox equals the whole batch's,
  except for the order between different customers' effects, which nothing orders (:func:`merge`).
  Each child builds its processor with :func:`build_processor` from the worker's own settings, the
  function the worker's process uses for its own (policy re-scoring stays there), and runs the
  same code (compiled or not: ``scoring.accel`` decides in the child as in the worker).
- **One batch at a time.** The worker awaits each decision (and each decay round) under its lock, so they
  never overlap, and each reads the states its predecessor wrote.
- **Dies with the worker.** A child ignores SIGINT and SIGTERM (the worker stops it after its last batch),
  and exits within a second of the worker's process being gone (kill -9): a watch thread sees its parent
  change. (Its pipe does not tell it: with ``spawn`` each child holds both ends of the call queue.)
- **Same policies.** The children read the policy files again; each reports its policies' ids and
  versions, and the pool refuses to start unless they equal the worker's (:func:`fingerprint`).
- **A dead child crashes the worker** (at-least-once: the batch was not applied; its records come again).
- **Re-routed records keep the batch's order.** They are split by the key they came with, not their
  customer, so :func:`merge` puts them back in batch order (the order they will be decided in).

Functions run in the children are module-level so that they pickle by name. Children start with
``spawn``: the worker has threads, which ``fork`` would copy into a broken state.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scoring.policy import CompiledPolicy, load_policies
from scoring.state import MAX_RETENTION_DAYS
from scoring.timers import continuous_thresholds
from streams.batch import BatchProcessor, DeadLetter, InRecord, Outbox
from streams.encoded import Encoded, FlatEncoded, encode_outputs
from streams.topics import Topics
from tierstream.settings import Settings

__all__ = ["DecisionPool", "PreparedRows", "RecordTuple", "States", "build_processor", "fingerprint",
           "lateness_horizon", "loader", "merge", "split", "split_rows"]

#: A record as it crosses the pipe: (topic, partition, offset, key, value, timestamp). A tuple: the worker
#: builds it straight from the consumer's message (``to_row``) and pickle writes it without a class reference
#: or a constructor call per record (an ``InRecord`` pickles too, by its ``__reduce__``, since session 18).
RecordTuple = tuple[str, int, int, bytes | None, bytes, float | None]
States = dict[tuple[str, int], bytes | None]
DeadTuple = tuple[RecordTuple, str, str]  # a DeadLetter as it crosses the pipe: (record, reason, detail)
Decided = tuple[Outbox, list[DeadTuple], FlatEncoded]  # what a child returns for its part (Encoded.flat)
Due = tuple[str, int, datetime]  # a customer due for re-scoring: (customer, partition, due time)
Fingerprint = tuple[tuple[str, int, int | None], ...]  # (policy id, version, shadow version) per live policy

_ORPHAN_CHECK_SECONDS = 1.0

#: A batch is split between processes only in parts of at least this many records (~5-10 ms of deciding
#: at live batch sizes): a smaller part's round trip through the pipe would cost more than it saves.
MIN_RECORDS_PER_PROCESS = 64


def lateness_horizon(settings: Settings, policies: Sequence[CompiledPolicy]) -> timedelta:
    """Events older than this (vs. the customer's newest event) are too late: the setting, else the
    longest window any loaded policy reads (an older event cannot change a windowed feature). Capped at
    the state's retention: lifetime features have no window, but state must stay bounded."""
    days = settings.lateness_horizon_days or max(p.max_window_days for p in policies)
    return timedelta(days=min(days, MAX_RETENTION_DAYS))


def build_processor(settings: Settings, policies: Sequence[CompiledPolicy] | None = None) -> BatchProcessor:
    """The worker's batch processor for ``settings`` (``policies``: already loaded from ``settings.policies``).

    The one place it is built: the worker's process and its decision process must decide alike."""
    loaded = list(policies) if policies is not None else load_policies(settings.policies)
    return BatchProcessor(
        loaded,
        Topics(settings.topic_prefix),
        settings.partitions,
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
        horizon=lateness_horizon(settings, loaded),
        thresholds=continuous_thresholds(p.source for p in loaded),
        shadows=load_policies(settings.shadow_policies) if settings.shadow_policies else (),
        rewrite_elided=settings.read_model_rewrite_unchanged,
    )


# ---------------------------------------------------------------------- the child's side
_processor: BatchProcessor | None = None
_started: Any = None  # multiprocessing.Barrier of the pool's children


def _watch_parent(parent: int) -> None:
    """Exit the child once its parent is gone (a kill -9 of the worker leaves it to init)."""
    while True:
        time.sleep(_ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


def _start_child(settings: Settings, parent: int, started: Any) -> None:
    """The child's initializer: build the processor once; leave stopping to the worker. ``started``: a
    barrier of all the children (:func:`_ready`)."""
    global _processor, _started
    # A Ctrl-C reaches the whole process group, and a supervisor's SIGTERM may too: the worker decides
    # when its decision process ends (after the batch in flight), not the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()
    _processor = build_processor(settings)
    _started = started
    from tierstream.commands.worker import tune_process

    tune_process()


def _decide_in_child(records: list[RecordTuple], states: States, now: datetime) -> Decided:
    """``BatchProcessor.process`` on the child's processor, with the states read by the worker; the
    outbox's dead letters apart, as tuples (:func:`_unpack`), and its tier changes and read-model records
    encoded here, on this core (streams.encoded: the worker's process only sends them)."""
    assert _processor is not None, "the decision process was not initialized"
    out = _processor.process([InRecord(*r) for r in records], loader(states), now)
    dead = [(_pack(d.record), d.reason, d.detail) for d in out.dead_letters]
    encoded = encode_outputs(out).flat()
    out.dead_letters = []
    return out, dead, encoded


def _decide_packed(rows: bytes, states: bytes) -> Decided:
    """:func:`_decide_in_child` of a part pickled by the worker (:meth:`DecisionPool.prepare`, :func:`_packed`)."""
    part_states, now = pickle.loads(states)
    return _decide_in_child(pickle.loads(rows), part_states, now)


def _decay_packed(call: bytes) -> Decided:
    """:func:`_decay_in_child` of a part pickled by the worker whole (:func:`_packed`: nothing of a decay run is
    pickled ahead)."""
    return _decay_in_child(*pickle.loads(call))


def _packed(value: object) -> bytes:
    """``value`` pickled in the caller's thread, for a call to a child.

    Why not leave it to ``ProcessPoolExecutor``: it pickles a call in its feeder thread, which competes for the
    GIL with the worker's loop, and once the loop awaits the decision it runs the previous batch's tail
    (emitting tier changes, packing Redis commands: ~0.15 s of CPU per 40,000-record backlog batch). Measured
    with temporary timing lines (session 20, one policy, backlog): the children started 0.08-0.18 s after the
    batch was split, and up to 0.12 s apart. Pickled here, the parts are on their way before the tail runs, and
    the feeder copies ``bytes``; the rows can be pickled ahead, while the batch before is decided
    (:meth:`DecisionPool.prepare`)."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _decay_in_child(due: list[Due], states: States, now: datetime) -> Decided:
    """``BatchProcessor.decay`` on the child's processor, with the states read by the worker; its tier changes
    and read-model records encoded here (a decay run has no dead letters)."""
    assert _processor is not None, "the decision process was not initialized"
    out = _processor.decay(due, loader(states), now)
    return out, [], encode_outputs(out).flat()


def _pack(r: InRecord) -> RecordTuple:
    return (r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)


def _unpack(decided: Decided) -> Outbox:
    """The child's outbox with its dead letters back in. Why apart: dead letters cross the pipe as tuples,
    like the records (:data:`RecordTuple`). Until session 18 the compiled build's ``InRecord`` and ``DeadLetter``
    could not be unpickled at all (no ``__reduce__``), and a result that fails to unpickle breaks the whole
    pool; tests/unit/scoring/test_pickling.py now keeps them picklable."""
    out, dead, _ = decided
    out.dead_letters = [DeadLetter(InRecord(*r), reason, detail) for r, reason, detail in dead]
    return out


def loader(states: States) -> Callable[[str, int], bytes | None]:
    """A state loader answering from ``states`` only (as :func:`streams.worker.read_ahead`'s does)."""
    def loaded(customer_id: str, partition: int) -> bytes | None:
        try:
            return states[(customer_id, partition)]
        except KeyError:
            raise LookupError(f"customer {customer_id!r} of partition {partition} was not read before its "
                              "batch (only records keyed by their customer are decided)") from None

    return loaded


def _ready() -> tuple[int, Fingerprint, bool]:
    """This child's pid, the :func:`fingerprint` of its processor and whether it runs the compiled core, once
    every child of the pool has built its processor: one call per child, each held at the barrier, so that
    no child takes two (ProcessPoolExecutor hands calls to any idle child)."""
    assert _processor is not None and _started is not None
    _started.wait(timeout=120)
    from scoring import accel

    return os.getpid(), fingerprint(_processor), accel.status().compiled


def fingerprint(processor: BatchProcessor) -> Fingerprint:
    """What must be equal between the worker's processor and a child's: each live and shadow policy's id
    and version (what the rollout guard keys on: streams.rollout), in order."""
    shadows = processor.decider.shadows
    return tuple((p.id, p.version, shadows[p.id].version if p.id in shadows else None)
                 for p in processor.policies)


# ---------------------------------------------------------------------- the worker's side
def split(records: Sequence[InRecord], groups: int) -> tuple[list[list[RecordTuple]], list[list[int]]]:
    """:func:`split_rows` of ``records`` as tuples."""
    return split_rows([_pack(r) for r in records], groups)


def split_rows(rows: Sequence[RecordTuple], groups: int) -> tuple[list[list[RecordTuple]], list[list[int]]]:
    """``rows`` in ``groups`` lists (arrival order kept within each), every record of one key in the same
    list, and each record's position in ``rows``: a customer's records are decided together (dedup, fold
    order, one decision), and a record is decided only for the customer of its key (streams.batch). By
    CRC-32 of the key, so that the groups are even whichever partitions the worker owns; records without a
    key go to the first."""
    if groups == 1:
        return [list(rows)], [list(range(len(rows)))]
    parts: list[list[RecordTuple]] = [[] for _ in range(groups)]
    positions: list[list[int]] = [[] for _ in range(groups)]
    for i, row in enumerate(rows):
        g = _group(row[3], groups)
        parts[g].append(row)
        positions[g].append(i)
    return parts, positions


def _group(key: bytes | None, groups: int) -> int:
    """The part of a record with ``key``, and of the state of the customer that key names."""
    return zlib.crc32(key) % groups if key else 0


def _split_states(states: States, groups: int) -> list[States]:
    """``states`` in the parts :func:`split_rows` gives their customers' records: a state is read only for the
    customer its record's key names (streams.worker.read_states), so the customer id encodes back to that
    key. Per customer, not per record."""
    out: list[States] = [{} for _ in range(groups)]
    for (customer_id, partition), raw in states.items():
        out[_group(customer_id.encode(), groups)][(customer_id, partition)] = raw
    return out


def _positioned(entries: list[tuple[bytes, bytes]], records: list[RecordTuple], positions: list[int]
                ) -> list[tuple[int, tuple[bytes, bytes]]]:
    """Each re-routed ``(customer, value)`` entry with the batch position of the record it came from.

    A part's entries come in its records' order, each carrying its record's original value, so each is
    matched to the next record with that value. Records with equal values are the same event or command
    (same id), so which of them an entry is matched to changes nothing that de-duplication would not undo."""
    out = []
    i = 0
    for entry in entries:
        while records[i][4] != entry[1]:
            i += 1
        out.append((positions[i], entry))
        i += 1
    return out


def merge(outboxes: Sequence[Outbox], parts: Sequence[tuple[list[RecordTuple], list[int]]] | None = None
          ) -> Outbox:
    """One outbox holding ``outboxes``' effects, each after the one before: what deciding their records as
    one batch gives, but for the order between customers of different outboxes (their customers are
    disjoint, and nothing orders outputs of different customers: streams.worker.Tail).

    Re-routed records are the exception: they are split by the key they came with, not by their customer,
    so one customer's records with different wrong keys can be in different parts, and their order on the
    repartition (or admin) topic is the order they will be decided in. Given ``parts`` (each outbox's
    records and their positions in the batch, from :func:`split`), they keep the batch's order."""
    merged = Outbox()
    repartition: list[tuple[int, tuple[bytes, bytes]]] = []
    readmin: list[tuple[int, tuple[bytes, bytes]]] = []
    for n, out in enumerate(outboxes):
        merged.merge(out)  # streams.decide.Effects: outputs, read model, due times, flags, counters
        merged.state_writes.update(out.state_writes)
        merged.dead_letters.extend(out.dead_letters)
        if parts is None:
            merged.repartition.extend(out.repartition)
            merged.readmin.extend(out.readmin)
        else:
            repartition.extend(_positioned(out.repartition, *parts[n]))
            readmin.extend(_positioned(out.readmin, *parts[n]))
        for key, count in out.counts.items():
            merged.counts[key] = merged.counts.get(key, 0) + count
        for partition, mark in out.watermarks.items():
            if partition not in merged.watermarks or mark > merged.watermarks[partition]:
                merged.watermarks[partition] = mark
    if parts is not None:
        merged.repartition = [entry for _, entry in sorted(repartition, key=lambda e: e[0])]
        merged.readmin = [entry for _, entry in sorted(readmin, key=lambda e: e[0])]
    return merged


@dataclass(frozen=True, slots=True)
class PreparedRows:
    """A batch's records as they go to the children, made before its states are read
    (:meth:`DecisionPool.prepare`): a pure function of the records, so it can be made while the batch before
    is decided."""

    rows: list[RecordTuple]  # the batch's records, in batch order
    keys: frozenset[tuple[bytes | None, int]]  # distinct (key, partition): whose states the batch needs
    count: int  # parts split into (split_rows); the non-empty ones follow
    parts: list[tuple[int, list[RecordTuple], list[int], bytes]]  # part number, records, batch positions, pickled


class DecisionPool:
    """Child processes deciding the worker's batches; :meth:`decide` awaits one batch's :class:`Outbox`."""

    def __init__(self, settings: Settings, processes: int, min_records: int = MIN_RECORDS_PER_PROCESS,
                 expect: Fingerprint | None = None) -> None:
        """``processes`` children; a batch goes to as many of them as it has ``min_records`` records.
        ``expect``: the :func:`fingerprint` of the worker's own processor, which every child's must equal."""
        if processes < 1:
            raise ValueError("a decision pool needs at least one process")
        self.settings = settings
        self.processes = processes
        self.min_records = min_records
        self.expect = expect
        self.compiled: list[bool] = []  # per child, once started: whether it runs the compiled core
        self._pool: ProcessPoolExecutor | None = None
        self._barrier: Any = None
        self._started: asyncio.Future[list[int]] | None = None
        self._stopped = False

    def start(self) -> asyncio.Future[list[int]]:
        """Spawn the children (once); the future resolves to their pids when each has built its processor
        (policies loaded: about a second), and fails if a child's policies differ from ``expect``."""
        if self._started is None:
            context = multiprocessing.get_context("spawn")
            # Kept: its semaphores are unlinked when the parent's object goes, before children attach to them.
            self._barrier = context.Barrier(self.processes)
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=context,
                initializer=_start_child, initargs=(self.settings, os.getpid(), self._barrier),
            )
            self._started = asyncio.ensure_future(self._start(self._pool))
        return self._started

    async def _start(self, pool: ProcessPoolExecutor) -> list[int]:
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self.processes)))
        except BaseException:
            self.stop()
            raise
        for pid, found, compiled in ready:
            # The children read the policy files again: one changed in between must not decide events with
            # a version the worker's own re-scoring and rollout guard do not know.
            if self.expect is not None and found != self.expect:
                self.stop()
                raise RuntimeError(f"decision process {pid} loaded other policies than the worker: {found} "
                                   f"!= {self.expect} (a policy file changed while the worker started)")
            self.compiled.append(compiled)
        return [pid for pid, _, _ in ready]

    async def _parts(self, count: int) -> tuple[ProcessPoolExecutor, int]:
        """The started pool and how many parts ``count`` records (or due customers) are split into: as many
        children as have ``min_records`` each, at least one. Raises ``CancelledError`` once stopped (also
        while the children started)."""
        if self._stopped:
            raise asyncio.CancelledError("the decision processes are stopped")
        await self.start()
        pool = self._pool
        if pool is None:  # stopped while the children started
            raise asyncio.CancelledError("the decision processes are stopped")
        return pool, self._count(count)

    def prepare(self, rows: list[RecordTuple]) -> PreparedRows:
        """``rows`` split into the parts :meth:`decide_rows` sends to the children, each pickled
        (:func:`_packed`), and the keys whose states they need: everything of a batch's decision that does not
        depend on the store, made while the batch before it is decided (streams.pipeline)."""
        count = self._count(len(rows))
        groups, positions = split_rows(rows, count)
        return PreparedRows(rows, frozenset((row[3], row[1]) for row in rows), count,
                            [(n, group, at, _packed(group))
                             for n, (group, at) in enumerate(zip(groups, positions, strict=True)) if group])

    def _count(self, records: int) -> int:
        """How many parts ``records`` records (or due customers) are split into: as many children as have
        ``min_records`` each, at least one."""
        return max(1, min(self.processes, records // self.min_records))

    async def decide(self, records: Sequence[InRecord], states: States, now: datetime
                     ) -> tuple[Outbox, Encoded]:
        """:meth:`decide_rows` of ``records`` as tuples."""
        return await self.decide_rows([_pack(r) for r in records], states, now)

    async def decide_rows(self, rows: Sequence[RecordTuple] | PreparedRows, states: States, now: datetime,
                          sent: Callable[[], None] | None = None) -> tuple[Outbox, Encoded]:
        """The outbox of the records ``rows`` (or of a batch :meth:`prepare` d) decided with ``states`` at
        ``now``, and its tier changes and read-model records encoded (:func:`streams.encoded.encode_outputs`:
        the outbox's own lists are empty); raises ``BrokenProcessPool`` if a child died, ``CancelledError``
        once stopped. The worker passes its batch as tuples (streams.worker.to_row): they are what crosses the
        pipe. ``sent`` is called once every part has been handed to the children."""
        prepared = rows if isinstance(rows, PreparedRows) else self.prepare(list(rows))
        pool, _ = await self._parts(len(prepared.rows))
        loop = asyncio.get_running_loop()
        mine = _split_states(states, prepared.count)
        # Each part's states pickled here too (_packed), after every part's rows: all parts leave at once.
        calls = [(blob, _packed((mine[n], now))) for n, _, _, blob in prepared.parts]
        futures = [loop.run_in_executor(pool, _decide_packed, *call) for call in calls]
        if sent is not None:
            sent()
        decided = await asyncio.gather(*futures)
        encoded = Encoded.joined(Encoded.from_flat(d[2]) for d in decided)  # each customer's in its part's order
        return merge([_unpack(d) for d in decided], [(group, at) for _, group, at, _ in prepared.parts]), encoded

    async def decay(self, due: Sequence[Due], states: States, now: datetime) -> tuple[Outbox, Encoded]:
        """:meth:`streams.batch.BatchProcessor.decay` of ``due`` with ``states`` (every due customer's,
        read ahead) at ``now``, split between the children by customer as :meth:`decide` splits records;
        the outbox's tier changes and read-model records come encoded. Raises as :meth:`decide` does.

        Why here: with a backlog the decay clock (event time) runs fast, and re-scoring customers due was a
        quarter of the worker's own process with eleven presets (py-spy, session 13)."""
        pool, n = await self._parts(len(due))
        loop = asyncio.get_running_loop()
        parts: list[list[Due]] = [[] for _ in range(n)]
        for entry in due:
            parts[_group(entry[0].encode(), n)].append(entry)
        mine = _split_states(states, n)
        calls = [_packed((part, part_states, now)) for part, part_states in zip(parts, mine, strict=True) if part]
        decided = await asyncio.gather(*(loop.run_in_executor(pool, _decay_packed, call) for call in calls))
        return merge([d[0] for d in decided]), Encoded.joined(Encoded.from_flat(d[2]) for d in decided)

    def stop(self) -> None:
        """End the children after the batch in flight, if any (whose outbox is then not awaited any more)."""
        self._stopped = True
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.shutdown(wait=False, cancel_futures=True)
