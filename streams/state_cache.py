"""Decoded customer states kept between batches, so a customer who comes back is not decoded again.

A live worker decides almost every event on its own (a batch holds a few milliseconds of arrivals), and
decoding the stored state (:meth:`scoring.state.CustomerState.from_bytes`) was 10-12 % of the hot path's
time at such batch sizes (py-spy of bench/bench_hotpath.py, 200-record batches). The worker keeps the
state object it has just encoded and written, with the bytes it wrote, and the next batch of that customer
takes the object instead of decoding the same bytes again.

Invariants:

- **The store stays the truth.** An object is used only while the bytes the store answers are equal to
  the bytes it was encoded to (:meth:`StateCache.decode` compares them), so a state written by anyone
  else (another worker before a rebalance, a changelog recovery, a policy rollout, a decay run) is decoded
  from the store as before. ``from_bytes(to_bytes(s))`` decides exactly as ``s`` (tests and the hot-path
  bench's digests check it), so a hit changes no decision.
- **An object is lent, not shared.** :meth:`decode` removes it; only :meth:`keep`, called once its batch's
  states are written, puts it back. A batch dropped unwritten (a rebalance overtook it) or a decay whose
  decision changed nothing (its mutated state is not stored) therefore leaves nothing behind that differs
  from the store.
- **Bounded.** At most ``capacity`` states, least recently written dropped first; 0 keeps none.
"""

from __future__ import annotations

from collections.abc import Mapping

from scoring.state import CustomerState


class StateCache:
    """Customer id -> (the bytes last written, the state object they were encoded from)."""

    def __init__(self, capacity: int) -> None:
        """``capacity``: states kept at most (0: none, every state is decoded from the store)."""
        self.capacity = capacity
        self._states: dict[str, tuple[bytes, CustomerState]] = {}  # insertion order = write order (LRU)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        """States held."""
        return len(self._states)

    def decode(self, customer_id: str, raw: bytes | None) -> CustomerState:
        """The state stored as ``raw`` (None: a new customer): the kept object when it was encoded to exactly
        these bytes, else ``CustomerState.from_bytes(raw)``. The kept object is handed over (removed)."""
        kept = self._states.pop(customer_id, None)
        if raw is None:
            return CustomerState.new(customer_id)
        if kept is not None and kept[0] == raw:
            self.hits += 1
            state = kept[1]
            # as from_bytes leaves it: no part counts as changed since the state was stored
            state.touched = 0
            return state
        self.misses += 1
        return CustomerState.from_bytes(raw)

    def keep(self, writes: Mapping[str, tuple[int, bytes]], states: Mapping[str, CustomerState]) -> None:
        """Remember the states just written: ``writes`` customer -> (partition, bytes), ``states`` customer ->
        the object those bytes were encoded from (an Outbox's ``state_writes`` and ``states``)."""
        if not self.capacity:
            return
        kept = self._states
        for customer_id, (_, data) in writes.items():
            state = states.get(customer_id)
            if state is not None:
                kept.pop(customer_id, None)  # to the end: the most recently written (decode popped it anyway)
                kept[customer_id] = (data, state)
        excess = len(kept) - self.capacity
        if excess > 0:
            for customer_id in list(_first(kept, excess)):
                del kept[customer_id]

    def clear(self) -> None:
        """Forget every state (an assignment changed which partitions this worker decides)."""
        self._states.clear()


def _first(kept: dict[str, tuple[bytes, CustomerState]], n: int) -> list[str]:
    """The ``n`` least recently kept customer ids."""
    out = []
    for customer_id in kept:
        if len(out) == n:
            break
        out.append(customer_id)
    return out
