"""The worker's hot path as a pure function of one batch: records in, effects out (no I/O, no Faust).

``BatchProcessor.process`` validates each record, routes bad ones to dead letters and mis-keyed ones to
the repartition topic, folds valid events into customer state, scores each touched customer once per
batch with every loaded policy (through its lifecycle: :mod:`streams.decide`), applies admin commands,
and returns an :class:`Outbox` that the Faust binding (:mod:`streams.worker`) carries out. Unit tests
drive it with plain records.

Crash-consistency invariants (at-least-once, effects idempotent):
- **State first** for events. The binding writes the new state (with each policy's lifecycle track and
  the outputs of its last step) to the table and flushes its changelog *before* producing anything. A
  crash after that replays the uncommitted records; they are duplicates now, so nothing is re-decided,
  and the stored outputs whose causing event was replayed are re-sent: same ``change_id``, same
  ``sequence``. No decision is lost, and none is made twice with different content.
- **Output first** for decay (:meth:`BatchProcessor.decay`): a decision evaluated at the customer's due
  time is a pure function of the stored state, so re-running it after a crash gives the same outputs.
- Every touched customer's state is written back, even for a batch of duplicates only, so a local store
  that got ahead of its changelog (kill -9 between the two) pushes its state to the changelog again.
- The read-model revision and each policy's ``sequence`` only grow, so read-model writes are monotonic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from schemas.admin import InvalidCommand, parse_command
from schemas.events import AnyEvent, InvalidEvent, future_timestamp, validate_event
from schemas.outputs import TierChangeEvent
from scoring.buckets import from_seconds, to_micros
from scoring.policy import CompiledPolicy
from scoring.state import CustomerState
from scoring.timers import next_review
from streams.decide import BOOKKEEPING, AdminCommand, Decider, Effects, forget_keys, read_records
from streams.partitioning import partition_for
from streams.topics import Topics
from tierstream.readmodel.codec import datetime_text, same_offset_text

__all__ = ["BOOKKEEPING", "BatchProcessor", "DeadLetter", "InRecord", "Outbox", "encode_change", "run_steps"]


@dataclass(slots=True, unsafe_hash=True)
class InRecord:
    """One consumed record, as the broker gave it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None  # broker timestamp, seconds

    # Not frozen, and an explicit __init__: the frozen dataclass's generated __init__ runs interpreted under mypyc
    # (~0.5 µs a construction against ~0.02 µs native; callgrind, session 17). Treated as immutable all the same:
    # nothing assigns its fields after construction (unsafe_hash keeps the frozen dataclass's field hash).
    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
                 timestamp: float | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp

    # Pickle and copy by construction: a mypyc class with its own __init__ cannot be created empty, which is how
    # the default protocol copies (TypeError in the compiled build only; tests/unit/scoring/test_pickling.py).
    def __reduce__(self) -> tuple[type[InRecord], tuple[Any, ...]]:
        return (InRecord, (self.topic, self.partition, self.offset, self.key, self.value, self.timestamp))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record: original bytes, where it came from, and why."""

    record: InRecord
    reason: str
    detail: str

    # Frozen: the default protocol's __setstate__ assigns the fields, which a compiled frozen class refuses.
    def __reduce__(self) -> tuple[type[DeadLetter], tuple[Any, ...]]:
        return (DeadLetter, (self.record, self.reason, self.detail))


@dataclass(slots=True)
class Outbox(Effects):
    """Everything one batch must do, in the order the binding does it."""

    state_writes: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # customer -> (partition, bytes)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    repartition: list[tuple[bytes, bytes]] = field(default_factory=list)  # (customer_id, original value)
    readmin: list[tuple[bytes, bytes]] = field(default_factory=list)  # mis-keyed admin commands, re-keyed
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, outcome) -> n
    watermarks: dict[int, datetime] = field(default_factory=dict)  # partition -> newest event time seen


StateLoader = Callable[[str, int], bytes | None]  # (customer_id, partition) -> stored state


#: A step of :meth:`BatchProcessor.steps` ends after this much work: the loop then answers within ~10 ms
#: (web, metrics, timers, rebalance callbacks), and a batch of 40,000 records yields ~100-300 times. Every
#: yield lets the consumer thread take the GIL (measured at 4,800 customers, one policy: steps of ~3 ms
#: cost ~5 % of the drain rate against none).
STEP_SECONDS: Final = 0.01
_CLOCK_EVERY: Final = 64  # records routed between two looks at the clock (~0.5 ms of routing)


def run_steps(steps: Generator[None, None, Outbox]) -> Outbox:
    """Drive a :meth:`BatchProcessor.steps` generator to its end, with nothing in between."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class BatchProcessor:
    """Stateless between batches: all per-customer state comes from ``load`` and leaves in the Outbox."""

    def __init__(
        self,
        policies: Sequence[CompiledPolicy],
        topics: Topics,
        partitions: int,
        max_future_skew: timedelta,
        horizon: timedelta,
        thresholds: Mapping[str, tuple[float, ...]] | None = None,
        shadows: Sequence[CompiledPolicy] = (),
        rewrite_elided: bool = True,
    ) -> None:
        """``rewrite_elided``: see :class:`streams.decide.Decider`."""
        if not policies:
            raise ValueError("at least one policy is required")
        self.policies = tuple(policies)
        self.topics = topics
        self.partitions = partitions
        self.max_future_skew = max_future_skew
        self.horizon = horizon
        self._horizon_us = horizon // timedelta(microseconds=1)
        self._skew_us = max_future_skew // timedelta(microseconds=1)
        self.decider = Decider(self.policies, thresholds or {}, shadows, rewrite_elided=rewrite_elided)

    # ------------------------------------------------------------------ validation and routing
    def _partition(self, cid: bytes) -> int:
        """``partition_for(cid, partitions)``, checked for every record. Not memoized: compiled
        (streams.partitioning), it costs about what a dict lookup of the key would."""
        return partition_for(cid, self.partitions)

    def _route(self, rec: InRecord, latest: int, out: Outbox) -> tuple[AnyEvent, int] | None:
        """The valid event to fold for this record and its ``occurred_at`` as epoch microseconds (what the fold
        takes: CustomerState.apply_micros), or None after routing it elsewhere. ``latest``: the newest valid
        event time, epoch microseconds (wall clock plus the allowed skew): :func:`schemas.events.parse_event`'s
        check, made on integers."""
        expected = self.topics.type_of(rec.topic)
        try:
            event = validate_event(rec.value)
            micros = to_micros(event.occurred_at)
            if micros > latest:
                raise future_timestamp(event, self.max_future_skew)
        except InvalidEvent as exc:
            self._dead(out, rec, exc.reason, exc.detail, expected or "unknown")
            return None
        if expected is not None and event.type != expected:
            self._dead(out, rec, "wrong_topic", f"a {event.type!r} event on the {expected!r} topic", event.type)
            return None
        cid = event.customer_id.encode()
        if rec.key != cid or self._partition(cid) != rec.partition:
            if rec.topic == self.topics.repartition:
                # We produced it keyed by customer_id with the same partitioner: a mismatch means the
                # repartition topic has another partition count. Forwarding again would loop forever.
                self._dead(out, rec, "partition_mismatch", "repartition topic partition count differs",
                           event.type)
                return None
            out.repartition.append((cid, rec.value))
            self._count(out, event.type, "repartitioned")
            return None
        return event, micros

    def _route_command(self, rec: InRecord, now: datetime, out: Outbox) -> AdminCommand | None:
        """The valid admin command of this record; refused ones are audited (never silently dropped)."""
        try:
            command = parse_command(rec.value)
        except InvalidCommand as exc:
            self._dead(out, rec, "invalid_command", str(exc), "admin")
            return None
        cid = command.customer_id.encode()
        if rec.key != cid or self._partition(cid) != rec.partition:
            if rec.topic == self.topics.admin_commands and rec.key == cid:
                self._dead(out, rec, "partition_mismatch", "admin topic partition count differs", "admin")
                return None
            out.readmin.append((cid, rec.value))
            self._count(out, "admin", "repartitioned")
            return None
        return command

    @staticmethod
    def _count(out: Outbox, kind: str, outcome: str) -> None:
        out.counts[(kind, outcome)] = out.counts.get((kind, outcome), 0) + 1

    def _dead(self, out: Outbox, rec: InRecord, reason: str, detail: str, kind: str) -> None:
        out.dead_letters.append(DeadLetter(rec, reason, detail))
        self._count(out, kind, "dead_letter")

    # ------------------------------------------------------------------ the batch
    def process(self, records: Sequence[InRecord], load: StateLoader, now: datetime | None = None) -> Outbox:
        """Fold and score one batch. ``now`` is wall-clock (validation, ``decided_at``)."""
        return run_steps(self.steps(records, load, now))

    def steps(self, records: Sequence[InRecord], load: StateLoader, now: datetime | None = None,
              step_seconds: float = STEP_SECONDS) -> Generator[None, None, Outbox]:
        """:meth:`process` in steps: yields once at least ``step_seconds`` of work has been done since the
        last yield (the clock is read every customer decided, every 64 records routed); returns the Outbox.

        The worker drives it from its event loop and lets the loop run between steps, so a batch of tens
        of thousands of records (seconds of work when the worker is behind) does not stop the web server,
        timers, the consumer's deliveries or Faust's rebalance callbacks for its whole length
        (streams.worker). The result is :meth:`process`'s whatever runs in between: nothing here reads
        anything but ``records`` and ``load``, and the worker's ``load`` answers from states read before
        the first step."""
        now = now or datetime.now(UTC)
        out = Outbox()
        events: dict[str, list[tuple[InRecord, AnyEvent, int]]] = {}
        commands: dict[str, list[tuple[InRecord, AdminCommand]]] = {}
        admin_topic = self.topics.admin_commands
        latest = to_micros(now) + self._skew_us  # the newest valid event time (_route)
        clock = time.perf_counter
        step_ends = clock() + step_seconds
        for i, rec in enumerate(records, 1):
            if rec.topic == admin_topic:
                command = self._route_command(rec, now, out)
                if command is not None:
                    commands.setdefault(command.customer_id, []).append((rec, command))
            else:
                routed = self._route(rec, latest, out)
                if routed is not None:
                    event, micros = routed
                    events.setdefault(event.customer_id, []).append((rec, event, micros))
            if not i % _CLOCK_EVERY and clock() >= step_ends:
                yield
                step_ends = clock() + step_seconds
        for customer_id in {**events, **commands}:
            self._customer(customer_id, events.get(customer_id, []), commands.get(customer_id, []), load, now, out)
            if clock() >= step_ends:
                yield
                step_ends = clock() + step_seconds
        return out

    def _customer(
        self,
        customer_id: str,
        items: list[tuple[InRecord, AnyEvent, int]],
        commands: list[tuple[InRecord, AdminCommand]],
        load: StateLoader,
        now: datetime,
        out: Outbox,
    ) -> None:
        partition = (items or commands)[0][0].partition
        raw = load(customer_id, partition)
        state = CustomerState.from_bytes(raw) if raw is not None else CustomerState.new(customer_id)
        # Event times as integer epoch microseconds (CustomerState.apply_micros: comparing the events' offset-
        # carrying datetimes cost a sixth of this core); the state's newest event time is whole seconds.
        newest_before = state.anchor
        applied: list[AnyEvent] = []
        applied_at: list[int] = []
        replayed: set[str] = set()
        horizon = self._horizon_us
        for rec, event, micros in items:
            # the customer's newest event time including this one (the horizon reference, scoring.state);
            # on a tie the stored one, as max() would pick
            last = state.anchor
            newer = last is None or micros > last * 1_000_000
            outcome = state.apply_micros(event, micros, (micros if newer else last * 1_000_000) - horizon)  # type: ignore[operator]
            if outcome == "too_late":
                newest = event.occurred_at if newer else from_seconds(last)  # type: ignore[arg-type]
                self._dead(out, rec, "too_late",
                           f"{event.type} event at {event.occurred_at.isoformat()} is older than the state keeps "
                           f"for its kind (lateness horizon at most {self.horizon.days} days) before the "
                           f"customer's newest event {newest.isoformat()}", event.type)
                continue
            self._count(out, event.type, str(outcome))
            if outcome == "applied":
                applied.append(event)
                applied_at.append(micros)
            else:
                replayed.add(event.event_id)
        if replayed:
            # Before any new decision: the stored outputs of a replayed causing event may never have left
            # (state first), and a decision on this batch's new events would replace them.
            self.decider.reemit(state, replayed, out)
            # The read model likewise: the stored decision's records may never have reached Redis (a kill
            # between the state write and the Redis write), and without a new decision nothing would write
            # them again. The version guard refuses what Redis already holds. Regression: the kill -9 test
            # found a customer's Redis tier one decision behind its state (bronze, oracle silver).
            out.read_model.extend(read_records(state, self.policies, now))
        if not applied and state.touched:
            # A compaction changed what features read, with no decision to account for it (only possible when
            # the horizon changed between runs): the stored feature keys may no longer match the state, so
            # the next decision must compute them (streams.decide elides unread only what is untouched).
            forget_keys(state)
        if applied:
            late = newest_before is not None and all(a < newest_before * 1_000_000 for a in applied_at)
            assert state.last_event_at is not None
            self.decider.decide(state, partition, state.last_event_at, "correction" if late else "event",
                                applied[-1].event_id, now, out)
        # Commands apply after the batch's events of the same customer (a batch is a few milliseconds of
        # arrivals); their time is the record's broker timestamp.
        for rec, command in commands:
            at = datetime.fromtimestamp(rec.timestamp, UTC) if rec.timestamp else now
            self.decider.command(state, partition, command, at, now, out)
            self._count(out, "admin", "applied")
        if state.version == 0 and not state.tiers:
            return  # nothing known of this customer (only refused commands): keep no state
        out.state_writes[customer_id] = (partition, state.to_bytes())
        if state.last_event_at is not None:
            mark = out.watermarks.get(partition)
            if mark is None or state.last_event_at > mark:
                out.watermarks[partition] = state.last_event_at

    def decay(self, due: Sequence[tuple[str, int, datetime]], load: StateLoader, now: datetime | None = None
              ) -> Outbox:
        """Re-score customers whose features or lifecycle change with time alone: (customer, partition, due).

        Each is evaluated *at its due time*, so the decision depends on the stored state only and a re-run
        after a crash decides identically (the binding produces these outputs before writing the state).
        """
        now = now or datetime.now(UTC)
        out = Outbox()
        for customer_id, partition, at in due:
            raw = load(customer_id, partition)
            if raw is None:
                continue
            state = CustomerState.from_bytes(raw)
            cause = "review" if any(
                next_review(at - timedelta(seconds=1), review) == at for review in self.decider.reviews) else "decay"
            # Nothing held or pending changed (decide returns False): keep the stored state and the read model
            # (whose revision lives in the state), so no read-model records; the due index gets the next due
            # time. After a restart the customer is found due again and re-decides the same nothing.
            if self.decider.decide(state, partition, at, cause, None, now, out, keep_unchanged=False):
                out.state_writes[customer_id] = (partition, state.to_bytes())
        return out


#: encode_change's orjson options for the explanation: datetimes and dataclasses to ``default``
#: (datetime_text), not orjson's own writing (it rounds an offset with seconds, and writes a dataclass's
#: ``__dict__``, not its fields)
_EXPLANATION_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def encode_change(change: TierChangeEvent) -> bytes:
    """The wire form of a tier change (JSON, field names by alias: ``from``/``to``): exactly
    ``orjson.dumps(change.model_dump(mode="json", by_alias=True))``.

    That pipeline's conversions are pydantic's JSON mode: datetimes become RFC 3339 text (``Z`` for offset
    zero), dataclasses dicts of their fields, tuples lists, what orjson would refuse (``Decimal``, ``timedelta``)
    text; floats, ints, strings and containers pass to orjson unchanged. So orjson alone writes the same bytes,
    with the top-level times' offsets checked first (:func:`tierstream.readmodel.codec.same_offset_text`), the
    explanation's datetimes handed to :func:`tierstream.readmodel.codec.datetime_text` (pydantic's text) and
    its dataclasses refused, without building the model's dump: 10.6 µs a change before, 2.9 µs now compiled
    (4.5 from source; timeit, one change; bench/bench_encode.py over a drain's; session 19; one per tier change, in the
    decision processes). What the fast path refuses (``TypeError``: a ``Decimal``, a dataclass, an offset with
    seconds, a big int) goes the old way, and so does a change that is not exactly a ``TierChangeEvent``, a
    score that is not a float (pydantic writes an ``int`` there as a float) or a number that is not an int.
    tests/unit/streams/test_encode_change.py compares the two (for the orjson and pydantic versions
    installed)."""
    fields = change.__dict__
    score = fields["score"]
    effective_at = fields["effective_at"]
    decided_at = fields["decided_at"]
    if (
        type(change) is TierChangeEvent
        and (score is None or type(score) is float)
        and type(fields["policy_version"]) is int
        and type(fields["sequence"]) is int
        and type(effective_at) is datetime
        and type(decided_at) is datetime
        and same_offset_text(effective_at)
        and same_offset_text(decided_at)
    ):
        try:
            # The explanation apart, with datetimes to datetime_text (a Python call each: 1.9 µs, so not for
            # the two top-level times, checked above and written by orjson itself) and dataclasses refused.
            explanation = orjson.Fragment(orjson.dumps(fields["explanation"], default=datetime_text,
                                                       option=_EXPLANATION_OPTIONS))
            return orjson.dumps({
                "schema_version": fields["schema_version"],
                "change_id": fields["change_id"],
                "customer_id": fields["customer_id"],
                "policy": fields["policy"],
                "policy_version": fields["policy_version"],
                "from": fields["from_tier"],
                "to": fields["to_tier"],
                "direction": fields["direction"],
                "cause": fields["cause"],
                "score": score,
                "sequence": fields["sequence"],
                "event_id": fields["event_id"],
                "effective_at": effective_at,
                "decided_at": decided_at,
                "explanation": explanation,
            }, option=orjson.OPT_UTC_Z)
        except TypeError:
            pass  # a value the fast path does not write (see above): pydantic converts it first
    return orjson.dumps(change.model_dump(mode="json", by_alias=True))
