"""Apply every offset of every input partition, in order, exactly once per consumer generation.

Faust's consumer can lose records around a rebalance: records fetched before the seek to the committed
offset are yielded, the fetch position moves past records it never yields, and the stream carries on
from there (faust-streaming issues #216, #221; measured here: right after an assignment a worker applied
``ticket/1`` 121-128 and then 138 onwards, 129-137 were never delivered, in a third of the scale-out
runs). Faust's own defence (its "gap" bookkeeping) then commits over the hole; we turn that off
(:func:`streams.faust_patches.disable_gap_commits`) and enforce contiguity ourselves:

- per partition we know the next offset to apply: the committed offset Faust sought to at the
  assignment, then the last applied offset + 1;
- a record below it was applied already in this generation: dropped (a re-delivery);
- a record above it means records were skipped: it and the partition's later records in the batch are
  held back (not applied, not acked) and the consumer is sought back to the expected offset ``E``;
- after that seek, records beyond the one that revealed the hole (``F``) were fetched before the seek:
  dropped. The first record at or below ``F`` comes from the new fetch: normally it is ``E``; when it is
  higher the hole is real (a transaction marker of a transactional producer, or records removed by
  retention) and is accepted, logged, counted, and handed to Faust as a gap so that commits pass it;
- a seek the worker makes on its own (to the commits once a rebalance has ended) is announced with
  :meth:`OffsetGuard.expect`: records above the sought offset that come before it were fetched before
  that seek, and are dropped like those before a seek back, without seeking again (session 8: after
  the seek moved behind Faust's flow resume, records queued in between made every restart seek every
  partition back, enough to fire the skipped-records alert);
- if the new fetch does not come (more than :data:`STALE_LIMIT` stale records), the consumer is sought
  again; after :data:`MAX_RESEEKS` seeks :class:`OffsetGapError` is raised: the worker crashes and its
  supervisor restarts it from the committed offsets, which is safe (at-least-once), where carrying on
  would not be.

Pure bookkeeping (no I/O): :meth:`OffsetGuard.admit` decides, the worker carries out the seeks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tierstream.offsets")

#: Seeks back to one expected offset before the worker gives up (crashes, to restart from the commit).
MAX_RESEEKS = 5
#: Stale records (fetched before a seek) tolerated per seek before seeking again: more than the source
#: queue and one fetch of a partition hold.
STALE_LIMIT = 20_000


class OffsetGapError(RuntimeError):
    """Records of an input partition were skipped and seeking back did not bring them."""


@dataclass(slots=True)
class _Resync:
    """A partition sought back to ``offset`` after record ``bound`` revealed the hole."""

    offset: int
    bound: int
    attempts: int = 1
    stale: int = 0


@dataclass(slots=True)
class Admission:
    """The outcome of :meth:`OffsetGuard.admit` for one batch.

    ``admitted``: the messages to apply, in input order. ``reseek``: partition -> offset to seek the
    consumer back to (records from there on were skipped). ``accepted_gaps``: partition -> (first missing,
    first present) of holes accepted as real. ``dropped``: how many messages were left out (re-deliveries,
    records held back behind a hole, records fetched before a seek).
    """

    admitted: list[Any] = field(default_factory=list)
    reseek: dict[Any, int] = field(default_factory=dict)
    accepted_gaps: dict[Any, tuple[int, int]] = field(default_factory=dict)
    dropped: int = 0


class OffsetGuard:
    """Per consumer generation: the next offset to apply of every partition seen, and pending re-seeks."""

    def __init__(self) -> None:
        self.generation: int | None = None
        self.expected: dict[Any, int] = {}
        self.resync: dict[Any, _Resync] = {}

    def admit(
        self, messages: Sequence[Any], generation: int, committed: Callable[[Any], int | None]
    ) -> Admission:
        """Decide which of ``messages`` (objects with ``tp`` and ``offset``, all of ``generation``) to
        apply. ``committed(tp)`` is the offset the consumer sought ``tp`` to at the assignment (None when
        unknown: the first record seen then sets the start). Updates the expected offsets as if every
        admitted message will be applied; call :meth:`forget` if the batch is then abandoned."""
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self.resync.clear()
        out = Admission()
        blocked: set[Any] = set()
        for message in messages:
            tp, offset = message.tp, message.offset
            if tp in blocked:
                out.dropped += 1
                continue
            expected = self.expected.get(tp)
            if expected is None:
                start = committed(tp)
                expected = offset if start is None else start
            if offset < expected:
                out.dropped += 1  # applied already in this generation
                continue
            pending = self.resync.get(tp)
            if pending is not None:
                if offset > pending.bound:  # fetched before our seek
                    out.dropped += 1
                    pending.stale += 1
                    if pending.stale > STALE_LIMIT:
                        if pending.attempts >= MAX_RESEEKS:
                            raise OffsetGapError(
                                f"{tp.topic}[{tp.partition}]: offsets from {pending.offset} were skipped and "
                                f"{pending.attempts} seeks back did not bring them")
                        pending.attempts += 1
                        pending.stale = 0
                        out.reseek[tp] = pending.offset
                        blocked.add(tp)
                    continue
                if offset > expected:  # the new fetch starts above the hole's start: the hole is real
                    out.accepted_gaps[tp] = (expected, offset)
                    log.warning("accepting a hole in an input partition", extra={
                        "topic": tp.topic, "partition": tp.partition, "missing_from": expected,
                        "missing_to": offset - 1, "seeks": pending.attempts})
                    expected = offset
                del self.resync[tp]
            elif offset > expected:
                self.resync[tp] = _Resync(expected, offset)
                out.reseek[tp] = expected
                blocked.add(tp)
                out.dropped += 1
                continue
            self.expected[tp] = offset + 1
            out.admitted.append(message)
        return out

    def expect(self, generation: int, sought: Mapping[Any, int]) -> None:
        """The consumer of ``generation`` was just sought to ``sought`` (partition -> offset) before any of
        that generation's records were admitted: each partition continues from its offset, and until the
        record at that offset comes, later ones are stale (dropped, counted towards :data:`STALE_LIMIT`)."""
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self.resync.clear()
        for tp, offset in sought.items():
            self.expected[tp] = offset
            self.resync[tp] = _Resync(offset, offset)

    def forget(self, generation: int | None = None) -> None:
        """Drop all expectations (the admitted batch was not applied): the next batch starts afresh from
        the committed offsets, like a new generation. With ``generation``, only if the guard still holds
        that generation's: a batch abandoned because a rebalance overtook it must not drop what the new
        generation's seek announced meanwhile (:meth:`expect`)."""
        if generation is not None and generation != self.generation:
            return
        self.generation = None
        self.expected.clear()
        self.resync.clear()
