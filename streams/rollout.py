"""Policy rollout in the worker: after a policy version change, re-score every stored customer of the old
version with cause ``policy_change``, rate-limited, unless the guard refuses the new version.

When a worker's assignment has recovered (:meth:`Rollout.after_rebalance`):

1. For each owned partition it reads the *rollout marker* of every loaded policy (``rollout-progress``
   table, one key per partition and policy: the version whose rollout is complete there). When every
   marker matches, nothing changed: the gate opens at once and no scan is needed (the common case).
2. Otherwise the gate stays shut (no batch, decay or re-score runs: nothing is decided with the new
   version yet) while the stored states of those partitions are scanned in a thread
   (:func:`scoring.rollout.plan_rollout`): per policy, the customers whose record has another version,
   and the guard's verdict on them (more than ``TIERSTREAM_ROLLOUT_MAX_SHARE`` would change tier:
   refused, unless ``TIERSTREAM_ROLLOUT_FORCE``).
3. Refused: the gate stays shut. The worker stays up, processes nothing (its lag grows, nothing is
   lost: no offset moves), reports not ready with the reason on ``/readyz``, sets
   ``tierstream_rollout_blocked`` (alert ``TierstreamRolloutRefused``) and logs the migration. The way
   out is a deliberate one: deploy the old version back, or restart with ``TIERSTREAM_ROLLOUT_FORCE``.
4. Allowed: the gate opens, events flow (an event re-scores its customer with the new version anyway,
   cause ``event``), and a timer works through the queue at ``TIERSTREAM_ROLLOUT_RATE`` customers per
   second (token bucket, ``TIERSTREAM_ROLLOUT_BURST``): each customer still on another version is decided
   at its last evaluation time (so only the policy differs) with cause ``policy_change``. A partition's
   markers are written when its last queued customer has been re-scored.

Re-scoring is output first, like decay (:meth:`streams.worker.Worker.carry_out`): after a crash the
markers are still old, the plan is made again from the same stored states, and the same changes (same
sequence, same ``change_id``) are emitted again.

The guard is per worker, over the customers of the partitions it plans: partitions are hash samples of
the customer base, so each worker's share estimates the fleet's; a fleet whose workers disagree near the
limit shows it in ``tierstream_rollout_changing_share``. ``tierstream simulate --from-state`` gives the
fleet-wide figure before a rollout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from scoring.policy import CompiledPolicy
from scoring.rollout import POLICY_CHANGE_CAUSE, RateLimiter, RolloutPlan, needs_rescore, plan_rollout
from scoring.state import CustomerState
from scoring.whatif import evaluation_time
from streams import metrics
from streams.batch import Outbox
from streams.partitioning import partition_for
from streams.worker import Worker
from tierstream.settings import Settings

log = logging.getLogger("tierstream.rollout")


def marker_key(policy_id: str, partition: int) -> bytes:
    """The rollout marker's key of ``policy_id`` in ``partition`` (the partition is in the key so that
    a store shared by all partitions, like Faust's memory store, keeps them apart)."""
    return f"{policy_id}@{partition}".encode()


def plan_partitions(
    items: Sequence[tuple[bytes, bytes | None]],
    partitions: set[int],
    total_partitions: int,
    policies: Sequence[CompiledPolicy],
    max_share: float,
    force: bool,
) -> RolloutPlan:
    """:func:`scoring.rollout.plan_rollout` over the stored ``(key, state)`` pairs of ``partitions``
    (pairs of other partitions, stale or standby data, are skipped). CPU-bound: run it in a thread."""

    def entries() -> Any:
        for key, value in items:
            if value is None:
                continue
            partition = partition_for(key, total_partitions)
            if partition in partitions:
                yield partition, CustomerState.from_bytes(value)

    return plan_rollout(entries(), policies, max_share, force)


class Rollout:
    """The worker's rollout state: the queue of customers to re-score, the rate limiter, the verdict."""

    def __init__(self, worker: Worker, settings: Settings) -> None:
        self.worker = worker
        self.policies = worker.processor.policies
        self.table = worker.app.rollout_table  # type: ignore[attr-defined]
        self.max_share = settings.rollout_max_share
        self.force = settings.rollout_force
        self.limiter = RateLimiter(settings.rollout_rate, settings.rollout_burst)
        self.queue: deque[tuple[int, str]] = deque()
        self.remaining: Counter[int] = Counter()  # partition -> queued customers not yet re-scored
        self.refused: dict[str, str] = {}  # policy id -> the guard's reason, while refused

    # ------------------------------------------------------------------ markers
    def pending_partitions(self, owned: set[int]) -> set[int]:
        """Owned partitions where some loaded policy's rollout is not complete (marker missing or of
        another version)."""
        worker = self.worker
        return {
            p for p in owned
            if any(worker.read_in(p, self.table, marker_key(policy.id, p)) != str(policy.version).encode()
                   for policy in self.policies)
        }

    def mark(self, partitions: set[int]) -> None:
        """Record the loaded versions as rolled out in ``partitions`` (call after their states are written)."""
        for p in partitions:
            for policy in self.policies:
                self.worker.write_in(p, self.table, marker_key(policy.id, p), str(policy.version).encode())

    # ------------------------------------------------------------------ planning
    async def after_rebalance(self, items: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Plan the rollout of the recovered assignment and open the gate, or keep it shut when refused.

        ``items`` are the store's ``(key, state)`` pairs (any partitions). Call once per completed
        rebalance, after the worker's ``owned`` partitions are known."""
        worker = self.worker
        epoch = worker.epoch()
        self.queue.clear()
        self.remaining.clear()
        self._set_refused({})
        metrics.ROLLOUT_QUEUE.set(0)
        pending = self.pending_partitions(set(worker.owned))
        if not pending:
            worker.gate.set()
            return
        started = time.monotonic()
        plan = await asyncio.get_running_loop().run_in_executor(
            None, plan_partitions, items, pending, worker.processor.partitions, self.policies,
            self.max_share, self.force)
        if epoch is None or not worker.current(epoch):
            return  # another rebalance began meanwhile: its completion plans again
        for pid, assessed in plan.assessments.items():
            version = str(worker.processor.decider.by_id[pid].version)
            metrics.ROLLOUT_CHANGING_SHARE.labels(pid, version).set(assessed.share_changed)
            ok, reason = plan.verdicts[pid]
            (log.info if ok else log.error)(
                "policy rollout %s: %s", "planned" if ok else "REFUSED", reason,
                extra={"policy": pid, "version": version, "partitions": sorted(pending),
                       "compared": assessed.compared, "changed": assessed.changed,
                       "upgrades": assessed.upgrades, "downgrades": assessed.downgrades,
                       "max_share": self.max_share, "forced": self.force})
        if not plan.ok:
            self._set_refused(plan.refused)
            metrics.WORKER_READY.set(0)
            return  # the gate stays shut: nothing is decided with a refused version
        self.queue.extend(plan.queue)
        self.remaining = Counter(p for p, _ in plan.queue)
        metrics.ROLLOUT_QUEUE.set(len(self.queue))
        async with worker.lock:
            if not worker.current(epoch):
                return
            self.mark({p for p in pending if not self.remaining[p]})  # nothing stale there
        log.info("policy rollout queue ready", extra={"customers": len(self.queue),
                                                      "seconds": round(time.monotonic() - started, 3)})
        worker.gate.set()

    def _set_refused(self, refused: dict[str, str]) -> None:
        for policy in self.policies:
            blocked = 1 if policy.id in refused else 0
            if blocked or policy.id in self.refused:
                metrics.ROLLOUT_BLOCKED.labels(policy.id, str(policy.version)).set(blocked)
        self.refused = dict(refused)

    # ------------------------------------------------------------------ re-scoring
    async def step(self) -> int:
        """Re-score as many queued customers as the rate limiter allows now; returns how many were taken
        off the queue. Serialized with batches and decay (the worker's lock)."""
        worker = self.worker
        if not self.queue or not worker.gate.is_set():
            return 0
        async with worker.lock:
            epoch = worker.epoch()
            if epoch is None:
                return 0
            n = self.limiter.take_up_to(len(self.queue), time.monotonic())
            if not n:
                return 0
            taken = [self.queue.popleft() for _ in range(n)]
            out, sizes = Outbox(), {}
            now = datetime.now(UTC)
            decider = worker.processor.decider
            load = worker.loader(sizes)
            for partition, customer_id in taken:
                raw = load(customer_id, partition)
                if raw is None:
                    continue
                state = CustomerState.from_bytes(raw)
                at = evaluation_time(state)
                if at is None or not any(needs_rescore(state, p) for p in self.policies):
                    continue  # an event re-scored it with the new version first
                decider.decide(state, partition, at, POLICY_CHANGE_CAUSE, None, now, out)
                out.state_writes[customer_id] = (partition, state.to_bytes())
            self.remaining.subtract(p for p, _ in taken)
            done = {p for p, _ in taken if self.remaining[p] <= 0}
            written = await worker.carry_out(out, sizes, epoch, then=lambda: self.mark(done))
            if written:
                worker.schedule(out)
                metrics.ROLLOUT_RESCORED.inc(len(out.state_writes))
            metrics.ROLLOUT_QUEUE.set(len(self.queue))
            if not self.queue:
                log.info("policy rollout complete on this worker's partitions")
            return n
