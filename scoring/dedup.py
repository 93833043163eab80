"""Compact identifiers and the bounded, time-keyed de-duplication memory of a customer state.

Ids (event ids, order ids, payment ids, ticket ids) are kept as short blake2b hashes, not strings, so a
state stays small. Collision risk is per customer: with ``n`` ids in memory the chance of any collision
is about ``n² / 2^(8·size+1)``; 6-byte hashes give < 2·10^-7 at n = 10,000.

Two representations are used:

- :func:`id_text`: a hash as 8 base64 characters (6 bytes). Used as the key of id-keyed entries
  (orders, payments, tickets), so the in-memory dict *is* the serialized JSON object (no per-entry
  conversion when loading or saving a state).
- :class:`DayRecords`: a set of ``(UTC day, hash)`` records kept as one sorted ``bytearray`` of
  fixed-width big-endian records (2-byte absolute day, then the hash bytes), serialized as base64. The
  byte order of a record is its ``(day, hash)`` order, so membership, insertion, eviction of old days and
  per-day-range counts are binary searches / C-level byte operations, never one Python object per id.
  Because the grouping key is the event's own day and eviction floors derive only from the customer's
  newest event, the remembered set is a pure function of the applied event set (order independent) and
  its serialized form is canonical.

:class:`DayIdMemory` and :func:`id_hash` / :func:`hash_to_text` / :func:`text_to_hash` are the previous
(format 1) helpers, kept for callers that still import them.
"""

from __future__ import annotations

import base64
import binascii
from hashlib import blake2b
from typing import Final

ID_BYTES: Final = 6
#: Bytes of the absolute UTC day at the start of each :class:`DayRecords` record (days < 65536: < 2149).
DAY_BYTES: Final = 2
#: Records stepped over linearly from an end before a binary search (Python-level steps cost alike).
_NEAR: Final = 8


def id_text(value: str, size: int = ID_BYTES) -> str:
    """Deterministic ``size``-byte blake2b hash of an id as standard base64 text (8 characters for 6 bytes).

    Stable across processes (unlike ``hash``). ``size`` must be a multiple of 3 so there is no padding.
    """
    return binascii.b2a_base64(blake2b(value.encode(), digest_size=size).digest(), newline=False).decode()


def id_digest(value: str, size: int) -> bytes:
    """Deterministic ``size``-byte blake2b hash of an id as raw bytes (for :class:`DayRecords`)."""
    return blake2b(value.encode(), digest_size=size).digest()


def id_hash(value: str, size: int = ID_BYTES) -> int:
    """Deterministic ``size``-byte hash of an id as an int (stable across processes, unlike ``hash``)."""
    return int.from_bytes(blake2b(value.encode(), digest_size=size).digest(), "big")


def hash_to_text(value: int, size: int = ID_BYTES) -> str:
    """An id hash as url-safe base64 without padding (8 characters for 6 bytes)."""
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).decode().rstrip("=")


def text_to_hash(text: str) -> int:
    """Inverse of :func:`hash_to_text`."""
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


class DayRecords:
    """Sorted set of ``(day, hash)`` records in one ``bytearray``; see the module docstring.

    Inputs: ``hash_bytes`` (width of the hash part) and optionally the base64 ``text`` of
    :meth:`encode`. Invariants: records are unique, sorted by their bytes (= by day, then hash), each
    ``DAY_BYTES + hash_bytes`` long; the base64 text is decoded lazily on first use and re-encoded only
    after a change (so an untouched memory costs nothing to load and save).
    """

    __slots__ = ("_raw", "_text", "width")

    def __init__(self, hash_bytes: int, text: str = "") -> None:
        self.width = DAY_BYTES + hash_bytes
        self._text: str | None = text  # canonical base64 of _raw; None after a change
        self._raw: bytearray | None = None if text else bytearray()

    # -- internals
    @property
    def raw(self) -> bytearray:
        """The sorted records (decoded on first access)."""
        raw = self._raw
        if raw is None:
            raw = self._raw = bytearray(binascii.a2b_base64(self._text))  # type: ignore[arg-type]
        return raw

    def _lower(self, key: bytes) -> int:
        """Index of the first record whose leading ``len(key)`` bytes are >= ``key`` (binary search)."""
        raw, w, n = self.raw, self.width, len(key)
        lo, hi = 0, len(raw) // w
        while lo < hi:
            mid = (lo + hi) >> 1
            start = mid * w
            if raw[start : start + n] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # -- queries
    def __len__(self) -> int:
        return len(self.raw) // self.width

    def __bool__(self) -> bool:
        return bool(self._text) if self._raw is None else bool(self._raw)

    def __contains__(self, record: bytes) -> bool:
        raw, w = self.raw, self.width
        i = raw.find(record)
        while i >= 0 and i % w:  # a match straddling two records is not a record
            i = raw.find(record, i + 1)
        return i >= 0

    def has(self, day: int, digest: bytes) -> bool:
        """True if ``digest`` is remembered on ``day``."""
        return day.to_bytes(DAY_BYTES, "big") + digest in self

    def has_hash(self, digest: bytes) -> bool:
        """True if ``digest`` is remembered on any day (a C-level search; records are fixed-width)."""
        raw, w = self.raw, self.width
        i = raw.find(digest, DAY_BYTES)
        while i >= 0 and i % w != DAY_BYTES:  # only the hash part of a record counts
            i = raw.find(digest, i + 1)
        return i >= 0

    def first_day(self) -> int | None:
        """Oldest remembered day, None when empty (reads 4 base64 characters if still encoded)."""
        raw = self._raw
        if raw is None:
            return int.from_bytes(binascii.a2b_base64(self._text[:4])[:DAY_BYTES], "big")  # type: ignore[index]
        return int.from_bytes(raw[:DAY_BYTES], "big") if raw else None

    def first_day_from(self, day: int) -> int | None:
        """Smallest remembered day ``>= day``, None if there is none (binary search)."""
        raw = self.raw
        if not raw:
            return None
        i = self._lower(min(max(day, 0), (1 << 16) - 1).to_bytes(DAY_BYTES, "big")) * self.width
        if i >= len(raw):
            return None
        found = int.from_bytes(raw[i : i + DAY_BYTES], "big")
        return found if found >= day else None

    def count_days(self, lo_day: int, hi_day: int) -> int:
        """Number of records with ``lo_day <= day <= hi_day``."""
        if hi_day < lo_day or not self.raw:
            return 0
        hi = self._lower(max(hi_day + 1, 0).to_bytes(DAY_BYTES, "big")) if hi_day + 1 < 1 << 16 else len(self)
        return hi - self._lower(max(lo_day, 0).to_bytes(DAY_BYTES, "big"))

    def days(self) -> list[int]:
        """Day of every record, in order (for next-change scans)."""
        raw, w = self.raw, self.width
        return [int.from_bytes(raw[i : i + DAY_BYTES], "big") for i in range(0, len(raw), w)]

    # -- updates
    def add(self, day: int, digest: bytes) -> bool:
        """Remember ``digest`` on ``day``; False if it already was (nothing changes then).

        New records almost always belong at or near the end (the newest day), so the position is found by
        stepping back from the end over a few records; far positions fall back to a binary search.
        """
        record = day.to_bytes(DAY_BYTES, "big") + digest
        raw = self.raw
        w = self.width
        pos = len(raw)
        for _ in range(_NEAR):
            if not pos:
                break
            prev = raw[pos - w : pos]
            if prev < record:
                break
            if prev == record:
                return False
            pos -= w
        else:
            pos = self._lower(record) * w
            if raw[pos : pos + w] == record:
                return False
        raw[pos:pos] = record
        self._text = None
        return True

    def evict(self, floor_day: int) -> None:
        """Forget every record of a day before ``floor_day`` (usually a few at the front: stepped over)."""
        if self._raw is None and self.first_day() >= floor_day:  # type: ignore[operator]
            return  # nothing to forget: stay encoded (a loaded state compacts every part once)
        raw = self.raw
        if not raw or int.from_bytes(raw[:DAY_BYTES], "big") >= floor_day:
            return
        floor = max(floor_day, 0).to_bytes(DAY_BYTES, "big")
        w = self.width
        cut = w  # the first record is older (checked above)
        for _ in range(_NEAR):
            if cut >= len(raw) or raw[cut : cut + DAY_BYTES] >= floor:
                break
            cut += w
        else:
            cut = self._lower(floor) * w
        del raw[:cut]
        self._text = None

    def encode(self) -> str:
        """Canonical base64 of all records ("" when empty)."""
        text = self._text
        if text is None:
            text = self._text = binascii.b2a_base64(self.raw, newline=False).decode()
        return text


class DayIdMemory:
    """Set of id hashes per UTC day: ``day -> {hash}`` (format-1 helper, kept for importers).

    Serialized as one base64 string of sorted records ``(anchor_day - day, hash)`` with fixed widths
    ``offset_bytes`` and ``hash_bytes``; offsets relative to the anchor keep the record narrow. Invariant: it
    only holds days ``>= floor_day`` after :meth:`evict` and ``offset < 256**offset_bytes``.
    """

    __slots__ = ("days", "hash_bytes", "offset_bytes")

    def __init__(self, hash_bytes: int, offset_bytes: int) -> None:
        self.days: dict[int, set[int]] = {}
        self.hash_bytes = hash_bytes
        self.offset_bytes = offset_bytes

    def seen(self, day: int, h: int) -> bool:
        """True if ``h`` was remembered on ``day``."""
        ids = self.days.get(day)
        return ids is not None and h in ids

    def add(self, day: int, h: int) -> None:
        """Remember ``h`` on ``day``."""
        ids = self.days.get(day)
        if ids is None:
            self.days[day] = {h}
        else:
            ids.add(h)

    def count(self, day: int) -> int:
        """Number of ids remembered on ``day``."""
        ids = self.days.get(day)
        return len(ids) if ids else 0

    def evict(self, floor_day: int) -> None:
        """Forget every day before ``floor_day``."""
        for day in [d for d in self.days if d < floor_day]:
            del self.days[day]

    def encode(self, anchor_day: int) -> str:
        """Canonical base64 of all records (sorted by day then hash)."""
        out = bytearray()
        ob, hb = self.offset_bytes, self.hash_bytes
        for day in sorted(self.days):
            offset = (anchor_day - day).to_bytes(ob, "big")
            for h in sorted(self.days[day]):
                out += offset
                out += h.to_bytes(hb, "big")
        return base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")

    def decode(self, text: str, anchor_day: int) -> None:
        """Load records produced by :meth:`encode` with the same ``anchor_day``."""
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        ob, width = self.offset_bytes, self.offset_bytes + self.hash_bytes
        for i in range(0, len(raw), width):
            day = anchor_day - int.from_bytes(raw[i : i + ob], "big")
            self.add(day, int.from_bytes(raw[i + ob : i + width], "big"))
