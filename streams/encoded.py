"""Tier changes encoded once, where they are decided: the wire record and the ledger write.

The worker's process sends each tier change twice: to the tier-change topic (its JSON, field names by
alias) and to the customer's Redis ledger (:class:`tierstream.readmodel.writer.LedgerWrite`), and counts
it in metrics. Neither needs the pydantic model once those bytes exist. A decision process
(:mod:`streams.decision_process`) therefore returns its tier changes as :class:`EncodedChange` tuples: the
encoding runs there, on another core, and the worker's process unpickles a tuple of strings and bytes
instead of a model with an explanation (measured for eleven presets: 878 ms to load a 40,000-record
batch's 11,641 models; docs/performance.md, session 12).

Invariant: ``wire`` is ``streams.batch.encode_change(change)`` and ``ledger`` is ``LedgerWrite.of(change)``,
byte for byte, whichever process encoded them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from schemas.outputs import TierChangeEvent
from streams.batch import encode_change
from tierstream.readmodel.writer import LedgerWrite

__all__ = ["EncodedChange", "encode_changes", "exact"]


class EncodedChange(NamedTuple):
    """One tier change as the worker's process carries it out: what its metrics read, and its bytes."""

    customer_id: str
    policy: str
    from_tier: str | None
    to_tier: str
    cause: str
    wire: bytes  # the tier-change record's value
    ledger: LedgerWrite  # its Redis ledger entry (score: effective_at, epoch seconds)


def encode_changes(changes: Iterable[TierChangeEvent]) -> list[EncodedChange]:
    """``changes`` encoded, in their order, each bytes object copied to its exact size (:func:`exact`)."""
    out = []
    for c in changes:
        ledger = LedgerWrite.of(c)
        out.append(EncodedChange(c.customer_id, c.policy, c.from_tier, c.to_tier, c.cause, exact(encode_change(c)),
                                 ledger._replace(member=exact(ledger.member))))
    return out


def exact(data: bytes) -> bytes:
    """``data`` in a bytes object of its own size. orjson (3.12 on) returns its output buffer, allocated
    with a power-of-two capacity and never shrunk: a 1.3 kB tier change held 8 kB. Held for a whole batch
    (11,641 tier changes of eleven presets), that was +400 MB of peak memory (tracemalloc; orjson 3.13.0;
    known upstream: ijl/orjson#483, home-assistant/core#181240). Copying costs ~0.2 µs per kilobyte."""
    return bytes(memoryview(data))
