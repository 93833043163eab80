"""Id-keyed entry tables of a customer state, kept in the order they are serialized. Pure.

An :class:`EntryTable` maps an id hash text (:func:`scoring.dedup.id_text`) to an entry list whose
element 0 is the entry's *newest event time* (epoch seconds). Its canonical order, the order of the
serialized JSON object, is by ``(newest time, id)``. Because ``orjson.loads`` preserves object order, a
loaded table is already canonical: loading and saving cost no per-entry Python work, and the entries that
age out first (the ones folded when the retention cut passes them) are at the front, so folding is
``O(folded)`` instead of a scan of every entry each time one ages out.

Bookkeeping that keeps this cheap under out-of-order arrival (not serialized, rebuilt lazily):

- ``_tail``: the largest ``(time, id)`` appended in order. An insert at or above it keeps the dict sorted.
- ``_stray``: the smallest time among entries appended *below* the tail (out of order), or None. Entries
  whose time grows are moved to the end (re-inserted), so they are either in order or strays.

Invariant: the in-order entries form a sorted subsequence of the dict and every stray's time is
``>= _stray``. Hence, for a cut ``<= _stray``, the entries with time ``< cut`` are exactly a prefix of the
dict (after a stray, every later in-order entry is above it), and :meth:`pop_older` needs no sort. The
dict is sorted in full only when a stray would be folded or before serializing (:meth:`canonical`);
on nearly sorted input that is a linear timsort pass.
"""

from __future__ import annotations

from collections.abc import Callable


def _by_time(item: tuple[str, list]) -> tuple[int, str]:
    return item[1][0], item[0]


class EntryTable:
    """``id text -> entry`` in ``(entry[0], id)`` order; see the module docstring for the invariant.

    ``d`` is the plain dict (read it freely; mutate entries in place but change ``entry[0]`` only through
    :meth:`touch`, add keys only through :meth:`insert` and remove them only through :meth:`pop_older` /
    :meth:`pop`).
    """

    __slots__ = ("_stray", "_tail", "d")

    def __init__(self, d: dict[str, list] | None = None) -> None:
        self.d: dict[str, list] = {} if d is None else d  # a loaded table is canonical (sorted)
        self._tail: tuple[int, str] | None = None  # None: unknown, derived from the last key when needed
        self._stray: int | None = None

    def __len__(self) -> int:
        return len(self.d)

    @property
    def stray(self) -> int | None:
        """Smallest time among out-of-order entries (None when the dict is in order)."""
        return self._stray

    def oldest(self) -> int | None:
        """Smallest entry time (O(1): the front entry, or a stray), None when empty."""
        d = self.d
        if not d:
            return None
        front = next(iter(d.values()))[0]
        stray = self._stray
        return front if stray is None or front < stray else stray

    def insert(self, key: str, entry: list) -> None:
        """Add a new ``key`` (not present) at the end, noting whether that kept the order."""
        d = self.d
        tail = self._tail
        if tail is None and d:
            last_key = next(reversed(d))
            tail = (d[last_key][0], last_key)
        item = (entry[0], key)
        if tail is None or item > tail:
            self._tail = item
        else:
            self._tail = tail
            if self._stray is None or entry[0] < self._stray:
                self._stray = entry[0]
        d[key] = entry

    def touch(self, key: str) -> None:
        """Re-position ``key`` after its entry's time (``entry[0]``) grew."""
        self.insert(key, self.d.pop(key))

    def pop(self, key: str) -> list:
        """Remove and return an entry (order of the rest is unaffected)."""
        return self.d.pop(key)

    def shift(self, delta: int) -> None:
        """Subtract ``delta`` from every entry time (the state's time base moved), bookkeeping included."""
        for entry in self.d.values():
            entry[0] -= delta
        if self._tail is not None:
            self._tail = (self._tail[0] - delta, self._tail[1])
        if self._stray is not None:
            self._stray -= delta

    def sort(self) -> None:
        """Put the dict in canonical order (clears the stray bookkeeping)."""
        d = self.d
        if self._stray is not None:
            self.d = d = dict(sorted(d.items(), key=_by_time))
            self._stray = None
        self._tail = None

    def canonical(self) -> dict[str, list]:
        """The dict in canonical ``(time, id)`` order (what is serialized)."""
        if self._stray is not None:
            self.sort()
        return self.d

    def pop_older(self, cut: int, keep: Callable[[list], bool] | None = None) -> list[tuple[str, list]]:
        """Remove and return, oldest first, the entries with time ``< cut`` (except those ``keep`` retains).

        Cost is proportional to the entries returned (plus retained ones), not to the table size.
        """
        d = self.d
        if not d:
            return []
        if self._stray is not None and self._stray < cut:
            self.sort()
            d = self.d
        old = []
        for key, entry in d.items():
            if entry[0] >= cut:
                break
            if keep is None or not keep(entry):
                old.append(key)
        if not old:
            return []
        out = [(key, d.pop(key)) for key in old]
        if not d:
            self._tail = self._stray = None
        return out
