"""Per-partition index of when each customer is next due for re-scoring (a sorted due-set).

A binary heap of (due, customer) per partition with lazy deletion: rescheduling a customer pushes a new
entry and the stale one is skipped when popped (its due no longer matches ``current``). ``pop_due`` costs
O(k log n) for k due customers; nothing scans customers that are not due. The index lives in memory and
is rebuilt from the state store after every rebalance (each state records its next due time), so it
needs no changelog of its own.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from datetime import datetime


class DueIndex:
    """Due times per partition; ``pop_due(partition, until)`` returns customers due at or before ``until``."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        self._current: dict[int, dict[str, datetime]] = defaultdict(dict)

    def schedule(self, partition: int, customer_id: str, due: datetime | None) -> None:
        """Set (or clear, with None) a customer's next due time."""
        current = self._current[partition]
        if due is None:
            current.pop(customer_id, None)
            return
        if current.get(customer_id) == due:
            return
        current[customer_id] = due
        heapq.heappush(self._heaps[partition], (due, customer_id))

    def pop_due(self, partition: int, until: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Remove and return up to ``limit`` (customer, due) with due <= ``until``, earliest first."""
        heap, current = self._heaps[partition], self._current[partition]
        out: list[tuple[str, datetime]] = []
        while heap and len(out) < limit and heap[0][0] <= until:
            due, customer = heapq.heappop(heap)
            if current.get(customer) == due:
                del current[customer]
                out.append((customer, due))
        return out

    def drop_partitions(self, keep: set[int]) -> None:
        """Forget partitions not in ``keep`` (revoked: another worker schedules them now)."""
        for p in list(self._heaps):
            if p not in keep:
                del self._heaps[p]
                self._current.pop(p, None)

    def size(self, partition: int | None = None) -> int:
        """Scheduled customers (in one partition, or all)."""
        if partition is not None:
            return len(self._current.get(partition, {}))
        return sum(len(c) for c in self._current.values())
