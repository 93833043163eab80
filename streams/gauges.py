"""Per-partition gauges of one worker: customers per tier, state size, consumer lag.

Dashboards sum these over workers, so each worker must export exactly the partitions it owns: counts
are kept per partition, dropped on revocation, and recounted from the state store after a rebalance
(the store is the truth; a recount runs in a thread so it does not stall processing). Between
rebalances they are maintained incrementally from each batch's decisions and state writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime

from scoring.state import CustomerState
from streams import metrics
from streams.batch import BOOKKEEPING, Outbox
from streams.partitioning import partition_for

log = logging.getLogger("tierstream.gauges")

#: (partition, customer, last evaluated at, next due) of one customer, as recorded in its state.
ScheduleEntry = tuple[int, str, datetime, datetime]


class PartitionGauges:
    """Tier counts, customers and bytes per owned partition; exported as worker-level gauges."""

    def __init__(self, partitions: int, policies: tuple[str, ...] = ()) -> None:
        self.partitions = partitions
        self._policies = policies  # exported with 0 when nothing is pending, so alerts see the series
        self.owned: set[int] = set()
        self.tiers: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
        self.customers: Counter[int] = Counter()
        self.bytes: Counter[int] = Counter()
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to process
        # partition -> {(customer, policy): (proposal open, override kind)}; only entries with either set
        self.flags: dict[int, dict[tuple[str, str], tuple[bool, str | None]]] = defaultdict(dict)
        self._exported: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ incremental
    def on_batch(self, out: Outbox, previous_sizes: dict[str, int], moves: Iterable[tuple[int, str, str | None, str]]
                 ) -> None:
        """Apply one batch: ``previous_sizes`` = stored bytes before the batch (0 = new customer),
        ``moves`` = (partition, policy, old tier or None, new tier) of every tier change."""
        for customer_id, (partition, data) in out.state_writes.items():
            old = previous_sizes.get(customer_id, 0)
            if old == 0:
                self.customers[partition] += 1
            self.bytes[partition] += len(data) - old
        for (partition, customer, policy), flag in out.flags.items():
            if flag[0] or flag[1]:
                self.flags[partition][(customer, policy)] = flag
            else:
                self.flags[partition].pop((customer, policy), None)
        for partition, policy, old_tier, new_tier in moves:
            counts = self.tiers[partition]
            if old_tier is not None:
                counts[(policy, old_tier)] -= 1
            counts[(policy, new_tier)] += 1

    def on_offsets(self, positions: dict[tuple[str, int], int]) -> None:
        """Remember the next offset to process per input partition (for lag)."""
        self.offsets.update(positions)

    # ------------------------------------------------------------------ rebalance
    def assign(self, partitions: set[int]) -> None:
        """Forget partitions no longer owned (their counts belong to another worker now)."""
        for p in set(self.tiers) | set(self.customers):
            if p not in partitions:
                self.tiers.pop(p, None)
                self.customers.pop(p, None)
                self.bytes.pop(p, None)
                self.flags.pop(p, None)
        self.offsets = {tp: o for tp, o in self.offsets.items() if tp[1] in partitions}
        self.owned = set(partitions)

    async def recount(self, items: Iterable[tuple[bytes, bytes]]) -> list[ScheduleEntry]:
        """Rebuild every owned partition's counts from the store's (key, value) pairs (in a thread).

        Returns every owned customer's decay bookkeeping as (partition, customer, evaluated at, next due),
        so the caller can rebuild its due index and decay clock from the same scan."""
        owned = set(self.owned)
        result = await asyncio.get_running_loop().run_in_executor(None, self._count, items, owned)
        tiers, customers, sizes, schedule, flags = result
        for p in owned:
            self.flags[p] = flags.get(p, {})
            self.tiers[p] = tiers.get(p, Counter())
            self.customers[p] = customers.get(p, 0)
            self.bytes[p] = sizes.get(p, 0)
        log.info("recounted state", extra={"partitions": sorted(owned), "customers": sum(customers.values())})
        return schedule

    def _count(
        self, items: Iterable[tuple[bytes, bytes]], owned: set[int]
    ) -> tuple[dict[int, Counter[tuple[str, str]]], Counter[int], Counter[int], list[ScheduleEntry], dict]:
        tiers: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
        schedule: list[ScheduleEntry] = []
        flags: dict[int, dict[tuple[str, str], tuple[bool, str | None]]] = defaultdict(dict)
        customers: Counter[int] = Counter()
        sizes: Counter[int] = Counter()
        for key, value in items:
            if value is None:
                continue
            p = partition_for(key, self.partitions)
            if p not in owned:
                continue  # standby or stale data of a partition another worker owns
            customers[p] += 1
            sizes[p] += len(value)
            for policy, record in CustomerState.from_bytes(value).tiers.items():
                if policy == BOOKKEEPING:
                    if record.get("due"):
                        at, due = datetime.fromisoformat(record["at"]), datetime.fromisoformat(record["due"])
                        schedule.append((p, key.decode(), at, due))
                else:
                    tiers[p][(policy, record["tier"])] += 1
                    lc = record.get("lc") or {}
                    if "pr" in lc or "o" in lc:
                        flags[p][(key.decode(), policy)] = ("pr" in lc, lc["o"].get("k") if "o" in lc else None)
        return tiers, customers, sizes, schedule, flags

    # ------------------------------------------------------------------ export
    def export(self, highwaters: dict[tuple[str, int], int]) -> None:
        """Set the Prometheus gauges from the owned partitions (labels of lost tiers go back to 0)."""
        totals: Counter[tuple[str, str]] = Counter()
        for p in self.owned:
            totals.update(self.tiers.get(p, Counter()))
        for labels in self._exported - set(totals):
            metrics.CUSTOMERS_PER_TIER.labels(*labels).set(0)
        for (policy, tier), n in totals.items():
            metrics.CUSTOMERS_PER_TIER.labels(policy, tier).set(n)
        self._exported = set(totals)
        approvals: Counter[str] = Counter()
        overrides: Counter[tuple[str, str]] = Counter()
        for p in self.owned:
            for (_, policy), (proposal, kind) in self.flags.get(p, {}).items():
                approvals[policy] += proposal
                if kind:
                    overrides[(policy, kind)] += 1
        for policy in self._policies:
            metrics.PENDING_APPROVALS.labels(policy).set(approvals.get(policy, 0))
            for kind in ("pin", "floor", "ceiling"):
                metrics.ACTIVE_OVERRIDES.labels(policy, kind).set(overrides.get((policy, kind), 0))
        metrics.STATE_CUSTOMERS.set(sum(self.customers[p] for p in self.owned))
        metrics.STATE_BYTES.set(sum(self.bytes[p] for p in self.owned))
        metrics.CONSUMER_LAG.clear()  # revoked partitions must disappear, not freeze at their last value
        for (topic, partition), hw in highwaters.items():
            if partition in self.owned and hw is not None:  # None until the partition's first fetch
                lag = max(0, hw - self.offsets.get((topic, partition), 0))
                metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
