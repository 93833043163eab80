"""Policy rollout and shadow mode (pure): what the stream worker needs when a policy version changes, and
to compare a shadow policy with the live one. No I/O, no clock: every time is an input.

Public API::

    needs_rescore(state, policy) -> bool         # a stored record decided by another version of the policy
    PolicyChange.plan(old, new) -> PolicyChange  # one policy id, old -> new version
      .customers(states) -> Iterator[str]        # who to re-score (every stored record of another version)
      .assess(states, at=None) -> Migration      # stored tiers vs the new version (scoring.whatif)
      .guard(migration, max_share, force)        # scoring.whatif.rollout_guard
      .tiers_removed / .tiers_added
    plan_rollout(entries, policies, max_share, force) -> RolloutPlan
                                                 # whom a worker re-scores, and the guard's verdict per policy
    RateLimiter(rate_per_s, burst)               # token bucket; .take(n, now) / .take_up_to(n, now) / .wait(n, now)
    shadow_diff(live, shadow) -> ShadowDiff | None    # metric labels when a shadow decision differs
    pair_shadows(live_policies, shadow_policies)      # which live policy each shadow policy shadows

Re-scoring a customer after a version change means: run the worker's normal decision
(``streams.decide.Decider.decide``) at the customer's :func:`scoring.whatif.evaluation_time` with cause
:data:`POLICY_CHANGE_CAUSE` and no event id. Evaluating at the time of the last decision keeps everything
but the policy fixed, so every emitted change is the policy's doing. The lifecycle already copes with a new
version whose tiers differ (``scoring.lifecycle`` forgets held/pending/override tiers the policy no longer
has and assigns afresh).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from scoring.state import CustomerState
from scoring.whatif import Migration, migration, rollout_guard

if TYPE_CHECKING:
    from scoring.policy import CompiledPolicy, Decision

#: The ``cause`` of tier changes emitted by a re-score after a policy version change
#: (``schemas.outputs.Cause``).
POLICY_CHANGE_CAUSE = "policy_change"
#: Label names of the shadow-difference metric, in the order :class:`ShadowDiff` gives them.
SHADOW_LABELS: tuple[str, ...] = ("policy", "shadow_version", "live_tier", "shadow_tier")


def needs_rescore(state: CustomerState, policy: CompiledPolicy) -> bool:
    """True when ``state`` holds a record for ``policy.id`` decided by another version (its ``"pv"``).

    Customers without a record are not re-scored: their first event scores them with the new version
    anyway, and there is no held tier to change. The check is idempotent: after a re-score (or any
    event) the record carries the new version and this turns False, so a re-score queue can re-check
    each customer when it gets to it and skip the ones an event already handled.
    """
    record = state.tiers.get(policy.id)
    if not record:
        return False
    return record.get("pv") != policy.version


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """A version change of one policy: ``old`` -> ``new`` (same id, different versions).

    ``tiers_removed`` are tiers of ``old`` that ``new`` does not have (their holders are re-assigned
    afresh by the lifecycle), ``tiers_added`` the reverse; both in the respective policy's order.
    """

    policy_id: str
    old: CompiledPolicy
    new: CompiledPolicy
    tiers_removed: tuple[str, ...]
    tiers_added: tuple[str, ...]

    @classmethod
    def plan(cls, old: CompiledPolicy, new: CompiledPolicy) -> PolicyChange:
        """The change from ``old`` to ``new``. ValueError when the ids differ (that is a new policy, not a
        change) or the versions are equal (the stored ``pv`` could not tell decided from undecided
        customers: bump the version). A lower new version (a rollback) is a change like any other."""
        if old.id != new.id:
            raise ValueError(f"policy change needs one policy id, got {old.id!r} and {new.id!r}")
        if old.version == new.version:
            raise ValueError(f"policy {new.id!r}: old and new are both version {new.version}; bump the version")
        return cls(
            policy_id=new.id,
            old=old,
            new=new,
            tiers_removed=tuple(t for t in old.tiers if t not in new.tiers),
            tiers_added=tuple(t for t in new.tiers if t not in old.tiers),
        )

    def customers(self, states: Iterable[CustomerState]) -> Iterator[str]:
        """Customer ids (input order) of the states to re-score: every stored record of another version."""
        for state in states:
            if needs_rescore(state, self.new):
                yield state.customer_id

    def assess(self, states: Iterable[CustomerState], at: datetime | None = None) -> Migration:
        """What the change would do: stored (held) tiers against the new version's scored tiers, each
        customer at its own last evaluation time unless ``at`` is given (:func:`scoring.whatif.migration`)."""
        return migration(states, self.new, None, at)

    @staticmethod
    def guard(assessed: Migration, max_share: float, force: bool) -> tuple[bool, str]:
        """:func:`scoring.whatif.rollout_guard`: ``(ok, reason)``."""
        return rollout_guard(assessed, max_share, force)


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """What a worker does about the policy versions it runs, over the customers of its partitions.

    ``queue``: ``(partition, customer_id)`` of every customer with a record of another version of some
    loaded policy, sorted (deterministic order, partition by partition). ``assessments``: per policy id
    with such customers, their stored tiers against the new version's scored tiers (each at its own
    evaluation time). ``verdicts``: per assessed policy, the guard's ``(ok, reason)``.
    Invariant: a policy is in ``verdicts`` iff it is in ``assessments`` iff one of its records is stale.
    """

    queue: tuple[tuple[int, str], ...]
    assessments: dict[str, Migration]
    verdicts: dict[str, tuple[bool, str]]

    @property
    def ok(self) -> bool:
        """True when every changed policy passed the guard (or nothing changed)."""
        return all(ok for ok, _ in self.verdicts.values())

    @property
    def refused(self) -> dict[str, str]:
        """Policy id -> the guard's reason, for every policy the guard refused."""
        return {pid: reason for pid, (ok, reason) in self.verdicts.items() if not ok}


def plan_rollout(
    entries: Iterable[tuple[int, CustomerState]],
    policies: Sequence[CompiledPolicy],
    max_share: float,
    force: bool,
) -> RolloutPlan:
    """Plan the re-score after policy version changes: ``entries`` are ``(partition, state)`` of every
    stored customer in scope (consumed once), ``policies`` the loaded (new) versions. The guard
    (:func:`scoring.whatif.rollout_guard`) runs per policy over the customers that policy would re-score,
    so a harmless change of one policy is not refused for another's sake, and vice versa."""
    stale: dict[str, list[CustomerState]] = {p.id: [] for p in policies}
    queue: set[tuple[int, str]] = set()
    for partition, state in entries:
        for policy in policies:
            if needs_rescore(state, policy):
                stale[policy.id].append(state)
                queue.add((partition, state.customer_id))
    by_id = {p.id: p for p in policies}
    assessments = {pid: migration(states, by_id[pid]) for pid, states in stale.items() if states}
    verdicts = {pid: rollout_guard(m, max_share, force) for pid, m in assessments.items()}
    return RolloutPlan(tuple(sorted(queue)), assessments, verdicts)


class RateLimiter:
    """Token bucket: on average ``rate_per_s`` tokens per second, at most ``burst`` at once.

    Pure apart from its own counters: ``now`` is a monotonic time in seconds the caller passes (e.g.
    ``time.monotonic()``). The bucket starts full. A ``now`` earlier than the last one adds nothing (a
    clock going backwards never mints tokens). Tokens are fractional, so slow rates (0.5/s) work.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate_per_s!r}, burst={burst!r}")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = self.burst
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def available(self, now: float) -> float:
        """Tokens available at ``now`` (after refilling)."""
        self._refill(now)
        return self._tokens

    def take(self, n: int, now: float) -> bool:
        """Take ``n`` tokens at ``now`` if all are available (True), else take none (False).

        ValueError for ``n > burst`` (it could never succeed) or ``n < 0``.
        """
        if n < 0 or n > self.burst:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.burst:g}")
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def take_up_to(self, n: int, now: float) -> int:
        """Take as many whole tokens as are available, at most ``n``; returns how many were taken.

        For batch work: re-score that many customers now, the rest later.
        """
        self._refill(now)
        got = min(max(n, 0), int(self._tokens))
        self._tokens -= got
        return got

    def wait(self, n: int, now: float) -> float:
        """Seconds from ``now`` until ``n`` tokens will be available (0.0 when they are); takes nothing."""
        if n > self.burst:
            raise ValueError(f"{n} tokens will never be available from a bucket of {self.burst:g}")
        self._refill(now)
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate


class ShadowDiff(NamedTuple):
    """Labels of one shadow difference (:data:`SHADOW_LABELS` order): the policy id, the shadow
    policy's version (as text, a label value), the live scored tier and the shadow scored tier.

    Label cardinality is bounded: versions x live tiers x shadow tiers of the configured policies.
    """

    policy: str
    shadow_version: str
    live_tier: str
    shadow_tier: str


def shadow_diff(live: Decision, shadow: Decision) -> ShadowDiff | None:
    """The metric labels when the shadow policy's decision differs from the live one, else None.

    Both are *scored* decisions (``CompiledPolicy.evaluate`` on the same features): the lifecycle is not
    run for a shadow policy (it emits nothing and keeps no track), so held tiers are not comparable.
    ``policy`` is the live policy id (a shadow is paired with the live policy of its id).
    """
    if live.tier == shadow.tier:
        return None
    return ShadowDiff(live.policy, str(shadow.version), live.tier, shadow.tier)


def pair_shadows(
    live: Sequence[CompiledPolicy], shadows: Sequence[CompiledPolicy]
) -> list[tuple[CompiledPolicy, CompiledPolicy]]:
    """``(live, shadow)`` pairs: each shadow policy shadows the live policy with its id.

    ValueError when a shadow has no live policy of its id (nothing to compare with) or two shadows share
    an id (their differences would be counted under the same labels).
    """
    by_id = {p.id: p for p in live}
    pairs: list[tuple[CompiledPolicy, CompiledPolicy]] = []
    seen: set[str] = set()
    for s in shadows:
        if s.id not in by_id:
            raise ValueError(f"shadow policy {s.id!r} ({s.source}) has no live policy of that id")
        if s.id in seen:
            raise ValueError(f"two shadow policies with id {s.id!r}")
        seen.add(s.id)
        pairs.append((by_id[s.id], s))
    return pairs
