"""Find input partitions the consumer has stopped delivering, so the worker can seek them again.

Faust seeks from the app's thread while aiokafka's fetcher runs in the consumer thread
(``streams.topology._seek_to_commits``, ``streams.worker.Worker._realign``). aiokafka's ``FetchResult.
getall`` checks the position, decodes the fetched records, then sets the position past them: a seek that
lands in between is overwritten, and the records it meant to fetch again never come. In the middle of a
partition the next record reveals the hole (:class:`streams.offsets.OffsetGuard`); at its tail nothing
does, and the partition's newest records wait, unapplied and uncommitted, until the next rebalance.
Measured: the kill -9 test's restarted worker sought partitions back and its commits stayed short of the
end for 10 minutes (3 of 6 runs, session 6); the rollout test's worker never applied the last record of
a partition (one CI run). Session 8 found the main cause elsewhere: the seek to the commits after a
rebalance ran before Faust resumed flow (and before it knew the commits), so records Faust dropped
afterwards were never fetched again (``streams.topology._rebalance_ended``); and it made the race
above impossible (:mod:`streams.consumer_positions`). With both fixed, 12 of 12 kill -9 runs under CPU
burners had no stall. This watch stays as the safety net for any other way a partition can stop (a
record lost between fetcher and worker, a broker that answers oddly).

The rule, per input partition, evaluated every check while the worker may apply records (flow active,
gate open); a check counts when the worker's source queue is empty then (every record Faust delivered has
been taken, so none of the partition's can still be on its way through the worker):

- ``expected``: the next offset the worker will apply (the offset guard's, else the committed offset);
- ``ahead``: the highest of the consumer's fetch position and the partition's high watermark;
- stalled when ``expected < ahead`` and ``expected`` has not moved for ``patience`` counted checks.

Under a backlog the queue is rarely empty, so a stall is found at the first lull; a worker that keeps up
empties its queue between fetches.

A stalled partition is sought to ``expected``, which is always safe: records below it were applied and
are dropped again by the guard, event ids absorb anything else. A partition that stays stalled after a
seek is sought again with doubling patience (up to :data:`MAX_PATIENCE` checks), so a high watermark
that never becomes reachable (a transaction marker at the tail) costs a log line a minute, not a loop.

Pure bookkeeping (no I/O): :meth:`StallWatch.check` decides, the worker seeks.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

#: Idle checks in a row before a partition that does not move is sought again (doubling per seek).
PATIENCE = 2
#: The longest wait between seeks of a partition that stays stalled, in checks.
MAX_PATIENCE = 32


@dataclass(frozen=True, slots=True)
class Probe:
    """What the worker sees of one input partition: the next offset it will apply, the consumer's fetch
    position (None before the first fetch) and the high watermark of the last fetch (None unknown)."""

    expected: int
    position: int | None
    highwater: int | None

    @property
    def ahead(self) -> int:
        """The furthest offset the consumer knows of (-1 when it knows none)."""
        return max(self.position if self.position is not None else -1,
                   self.highwater if self.highwater is not None else -1)


@dataclass(slots=True)
class _Track:
    expected: int
    idle_checks: int = 0
    patience: int = PATIENCE
    seeks: int = 0


class StallWatch:
    """Per input partition: how long it has been behind without moving; which to seek now."""

    def __init__(self, patience: int = PATIENCE) -> None:
        self.patience = patience
        self._tracks: dict[Hashable, _Track] = {}

    def check(self, probes: Mapping[Hashable, Probe], idle: bool) -> dict[Hashable, int]:
        """One check. ``probes``: every input partition the worker owns now; ``idle``: the worker's source
        queue is empty now (nothing delivered is still on its way). Returns partition -> offset to seek it
        to (empty unless idle). Partitions missing from ``probes`` are forgotten (revoked)."""
        self._tracks = {tp: t for tp, t in self._tracks.items() if tp in probes}
        seeks: dict[Hashable, int] = {}
        for tp, probe in probes.items():
            track = self._tracks.get(tp)
            if track is None or track.expected != probe.expected or probe.expected >= probe.ahead:
                # moving, new, or caught up: start counting afresh
                self._tracks[tp] = _Track(probe.expected, patience=self.patience)
                continue
            if not idle:
                continue  # records may be on their way: not evidence of a stall
            track.idle_checks += 1
            if track.idle_checks >= track.patience:
                seeks[tp] = probe.expected
                track.seeks += 1
                track.idle_checks = 0
                track.patience = min(track.patience * 2, MAX_PATIENCE)
        return seeks

    def seeks(self, tp: Hashable) -> int:
        """How many times ``tp`` was sought for the stall it is in now (0 when it is moving)."""
        track = self._tracks.get(tp)
        return 0 if track is None else track.seeks
