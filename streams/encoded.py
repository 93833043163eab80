"""Tier changes encoded once, where they are decided: the wire record and the ledger write.

The worker's process sends each tier change twice: to the tier-change topic (its JSON, field names by
alias) and to the customer's Redis ledger (:class:`tierstream.readmodel.writer.LedgerWrite`), and counts
it in metrics. Neither needs the pydantic model once those bytes exist. A decision process
(:mod:`streams.decision_process`) therefore returns its tier changes as :class:`EncodedChange` tuples: the
encoding runs there, on another core, and the worker's process unpickles a tuple of strings and bytes
instead of a model with an explanation (measured for eleven presets: 878 ms to load a 40,000-record
batch's 11,641 models; docs/performance.md, session 12).

The read-model records go the same way (session 13): each as a :class:`~tierstream.readmodel.writer.
RecordWrite` (its Redis value encoded), and those the customer-tiers snapshot topic must receive as their
record's key and value. With eleven presets a 40,000-record batch has 64,735 read-model records: 1.1 s to
unpickle as models in the worker's process, before encoding each again (session 12).

Invariants: ``wire`` is ``streams.batch.encode_change(change)``, ``ledger`` is ``LedgerWrite.of(change)``,
a record write is ``RecordWrite.of(record)`` and a snapshot record is :func:`snapshot_record`'s, byte for
byte, whichever process encoded them. :func:`encode_outputs` empties the outbox's ``tier_changes`` and
``read_model`` (what replaces them is returned), so nothing is carried out twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import orjson

from schemas.outputs import TierChangeEvent
from schemas.readmodel import TierRecord
from streams.batch import Outbox, encode_change
from tierstream.readmodel import codec
from tierstream.readmodel.codec import exact  # defined there: the read model's encoders copy too
from tierstream.readmodel.writer import LedgerWrite, RecordWrite

__all__ = ["Encoded", "EncodedChange", "FlatEncoded", "encode_changes", "encode_outputs", "exact", "snapshot_record"]


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


class Encoded(NamedTuple):
    """A batch's outputs as the worker's process carries them out: nothing left to encode."""

    changes: list[EncodedChange]  # tier changes, each customer's in decision order
    records: list[RecordWrite]  # read-model writes
    snapshots: list[tuple[bytes, bytes]]  # customer-tiers records (key, value)

    def flat(self) -> FlatEncoded:
        """These outputs as plain tuples, to cross a process pipe (:meth:`from_flat` rebuilds them).

        Why: pickle writes a named tuple through its ``__reduce_ex__`` and loads it by calling the class's
        ``__new__``, both interpreted Python per object; a plain tuple is C all the way. 64,000 records
        (eleven presets, a 40,000-record batch has ~65,000): 216 ms to dump and 210 ms to load as
        ``RecordWrite``, 56 and 39 ms as tuples (session 19), and the load runs in the worker's own process."""
        return ([(c[0], c[1], c[2], c[3], c[4], c[5], tuple(c[6])) for c in self.changes],
                list(map(tuple, self.records)), self.snapshots)

    @classmethod
    def from_flat(cls, flat: FlatEncoded) -> Encoded:
        """The outputs :meth:`flat` gave (each record rebuilt by C calls alone: ``tuple.__new__`` over the
        tuple, through ``map``)."""
        changes, records, snapshots = flat
        return cls([EncodedChange(c[0], c[1], c[2], c[3], c[4], c[5], _new_ledger(c[6])) for c in changes],
                   list(map(_new_record, records)), snapshots)

    @classmethod
    def joined(cls, parts: Iterable[Encoded]) -> Encoded:
        """Parts decided apart, as one, in the order given, each part's order kept: one per decision process
        (disjoint customers), or one per decay round (a customer due again in a later round comes after)."""
        out = cls([], [], [])
        for part in parts:
            out.changes.extend(part.changes)
            out.records.extend(part.records)
            out.snapshots.extend(part.snapshots)
        return out


#: :class:`Encoded` as it crosses the decision processes' pipe: (tier changes with their ledger write, record
#: writes, snapshot records), every named tuple a plain one (:meth:`Encoded.flat`).
FlatEncoded = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[bytes, bytes]]]
# tuple.__new__(RecordWrite, values): a RecordWrite of a plain tuple of its fields, without the named tuple's
# interpreted __new__ (the fields are the tuple's items, in order: what RecordWrite(*values) builds)
_new_record: Callable[[tuple[Any, ...]], RecordWrite] = partial(tuple.__new__, RecordWrite)  # type: ignore[arg-type]
_new_ledger: Callable[[tuple[Any, ...]], LedgerWrite] = partial(tuple.__new__, LedgerWrite)  # type: ignore[arg-type]


def encode_outputs(out: Outbox) -> Encoded:
    """``out``'s tier changes and read-model records encoded (``out.tier_changes`` and ``out.read_model``
    emptied). A record goes to the snapshot topic when its (customer, policy) changed tier in ``out`` or it
    carries an override: the snapshot follows tier changes and overrides, not every score refresh. The rule
    is per decision (a batch, one decay round): a decay run's later round that only refreshes the score of a
    customer whose tier changed in an earlier round sends no snapshot record, as a later batch would not.
    (Until session 13 a decay run applied it over all its rounds together.)"""
    changes = encode_changes(out.tier_changes)
    changed = {(c.customer_id, c.policy) for c in changes}
    records = []
    snapshots = []
    for record in out.read_model:
        records.append(RecordWrite.of(record))
        if (record.customer_id, record.policy) in changed or record.override is not None:
            snapshots.append(snapshot_record(record))
    out.tier_changes, out.read_model = [], []
    return Encoded(changes, records, snapshots)


def snapshot_record(record: TierRecord) -> tuple[bytes, bytes]:
    """The customer-tiers (compacted snapshot) record of ``record``: key ``[customer, policy]``, value its JSON
    (``orjson.dumps(record.model_dump(mode="json"))``, byte for byte: ``codec.encode_keyed``)."""
    return exact(orjson.dumps([record.customer_id, record.policy])), codec.encode_keyed(record)  # its own size
