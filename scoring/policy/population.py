"""The population a policy ranks against: a protocol, and a mergeable fixed histogram implementing it.

Percentile bands ("top 5%") and quotas ("at most 1% diamond") need the distribution of scores over *all*
customers, while each worker only sees its partitions. Each worker keeps a :class:`ScoreHistogram` per
policy for its customers (add the new score, remove the old one); histograms with the same layout merge by
adding counts, so the global view is the sum of every worker's, refreshed periodically (the caller decides
how: e.g. a compacted topic of serialized histograms). Merging is associative and commutative, and
``to_bytes`` is deterministic, so any merge order gives identical bytes.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Protocol, runtime_checkable

_HEADER = struct.Struct("<4sddI")
_MAGIC = b"TSH1"


@runtime_checkable
class PopulationView(Protocol):
    """Read-only view of the scored population of each policy."""

    def total(self, policy: str) -> int:
        """Number of scored customers for ``policy`` (0 when unknown)."""
        ...

    def count_at_or_above(self, policy: str, score: float) -> float:
        """Estimated number of customers whose score is >= ``score`` (the best customer counts 1)."""
        ...

    def tier_counts(self, policy: str) -> Mapping[str, int]:
        """Current number of customers per tier (for reporting and quota dashboards)."""
        ...


class ScoreHistogram:
    """Fixed-layout histogram of scores in ``[low, high)`` with ``bins`` equal bins plus an underflow and an
    overflow bin; mergeable, serializable.

    Accuracy: counts are exact per bin. ``count_at_or_above(s)`` counts every bin above the one holding
    ``s`` exactly and interpolates linearly inside that bin, so its error is at most the number of
    customers in that one bin (width ``(high - low) / bins``: 0.1 point for the default 0..100 / 1000).
    When scores are multiples of the bin width (e.g. scores with one decimal on 0..100 / 1000) the
    estimate is exact, ties included. Scores outside ``[low, high)`` fall in the under/overflow bins and
    are ranked only relative to the whole bin.
    """

    __slots__ = ("_scale", "_suffix", "bins", "counts", "high", "low")

    def __init__(
        self, low: float = 0.0, high: float = 100.0, bins: int = 1000, counts: Iterable[int] | None = None
    ) -> None:
        if not high > low or bins < 1:
            raise ValueError("need high > low and bins >= 1")
        self.low = float(low)
        self.high = float(high)
        self.bins = int(bins)
        self._scale = self.bins / (self.high - self.low)
        self.counts = array("q", counts if counts is not None else [0] * (self.bins + 2))
        if len(self.counts) != self.bins + 2:
            raise ValueError("counts must have bins + 2 entries")
        # suffix[i] = customers in bins i.. (cached between changes: ranking is O(1), not O(bins))
        self._suffix: list[int] | None = None

    def _index(self, score: float) -> int:
        # index 0 = underflow, 1..bins = regular, bins + 1 = overflow; the epsilon keeps scores that sit on a
        # bin edge (76.5 -> 765.0000000001 or 764.9999999999) in the bin that starts there.
        if score < self.low:
            return 0
        i = math.floor((score - self.low) * self._scale + 1e-9)
        return self.bins + 1 if i >= self.bins else i + 1

    def add(self, score: float, n: int = 1) -> None:
        """Count ``n`` customers with ``score`` (negative ``n`` removes; counts never go below 0)."""
        i = self._index(float(score))
        self.counts[i] = max(0, self.counts[i] + n)
        self._suffix = None

    def remove(self, score: float) -> None:
        """Forget one customer with ``score`` (e.g. their previous score)."""
        self.add(score, -1)

    @property
    def total(self) -> int:
        """Number of counted customers."""
        suffix = self._suffix
        return suffix[0] if suffix is not None else sum(self.counts)

    def same_layout(self, other: ScoreHistogram) -> bool:
        """True when ``other`` can be merged with this one."""
        return (self.low, self.high, self.bins) == (other.low, other.high, other.bins)

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """A new histogram with the counts of both (layouts must match)."""
        if not self.same_layout(other):
            raise ValueError("cannot merge histograms with different layouts")
        return ScoreHistogram(
            self.low, self.high, self.bins, (a + b for a, b in zip(self.counts, other.counts, strict=True))
        )

    def count_at_or_above(self, score: float) -> float:
        """Estimated number of customers with a score >= ``score`` (see the class docstring for accuracy)."""
        score = float(score)
        i = self._index(score)
        suffix = self._suffix
        if suffix is None:
            suffix = self._suffix = [*reversed(list(accumulate(reversed(self.counts)))), 0]
        above = suffix[i + 1]
        if i == 0 or i == self.bins + 1:
            return float(above + self.counts[i])
        bin_low = self.low + (i - 1) / self._scale
        share_at_or_above = 1.0 - min(1.0, max(0.0, (score - bin_low) * self._scale))
        if share_at_or_above > 1.0 - 1e-6:  # score sits on the bin's lower edge: the whole bin ties or beats
            share_at_or_above = 1.0
        return above + self.counts[i] * share_at_or_above

    def percentile_of(self, score: float) -> float | None:
        """Percent of customers with a score strictly below ``score`` (0..100); None for an empty histogram."""
        total = self.total
        if total == 0:
            return None
        return 100.0 * (total - self.count_at_or_above(score)) / total

    def to_bytes(self) -> bytes:
        """Deterministic little-endian serialization (layout + counts)."""
        counts = array("q", self.counts)
        if struct.pack("=i", 1) != struct.pack("<i", 1):  # pragma: no cover - big-endian hosts
            counts.byteswap()
        return _HEADER.pack(_MAGIC, self.low, self.high, self.bins) + counts.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ScoreHistogram:
        """Inverse of :meth:`to_bytes`; raises ValueError on malformed data."""
        if len(data) < _HEADER.size:
            raise ValueError("truncated histogram")
        magic, low, high, bins = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + 8 * (bins + 2):
            raise ValueError("not a serialized ScoreHistogram")
        counts = array("q")
        counts.frombytes(data[_HEADER.size :])
        if struct.pack("=i", 1) != struct.pack("<i", 1):  # pragma: no cover
            counts.byteswap()
        return cls(low, high, bins, counts)


class HistogramPopulation:
    """A :class:`PopulationView` over one merged histogram per policy, plus optional tier counts."""

    def __init__(
        self,
        histograms: Mapping[str, ScoreHistogram],
        tier_counts: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self._hist = dict(histograms)
        self._tiers = {k: dict(v) for k, v in (tier_counts or {}).items()}

    def total(self, policy: str) -> int:
        """Number of scored customers for ``policy``."""
        h = self._hist.get(policy)
        return 0 if h is None else h.total

    def count_at_or_above(self, policy: str, score: float) -> float:
        """Estimated customers of ``policy`` scoring >= ``score``."""
        h = self._hist.get(policy)
        return 0.0 if h is None else h.count_at_or_above(score)

    def tier_counts(self, policy: str) -> Mapping[str, int]:
        """Tier counts as given at construction."""
        return self._tiers.get(policy, {})
