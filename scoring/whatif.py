"""What-if (pure): how customers would move between tiers if a new policy replaced the current one.

Public API::

    migration(states, new, current=None, at=None) -> Migration    # the from-tier x to-tier matrix, movers
    rollout_guard(migration, max_share, force) -> (ok, reason)     # refuse when too many customers move
    evaluation_time(state) -> datetime | None                      # when the worker last decided a state

The "current" tier of a customer is either ``current.evaluate`` on the same features (comparing two policy
files) or, when no current policy is given, the tier the worker stored for the new policy's id in
``state.tiers[new.id]["tier"]`` (comparing a new version against what customers hold now). The "new" tier
is always ``new.evaluate`` -- the *scored* tier. A stored tier is the *held* tier (after the lifecycle:
grace periods, approvals, overrides), so a stored-tier comparison is an upper bound of the changes the
worker would emit at once: some moves would wait for a grace period or an approval.

Percentile policies (``needs_population``) are ranked against the population of the given states in two
passes, exactly as :func:`scoring.replay.replay` does.

No I/O; deterministic for the same states, policies and ``at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scoring.state import CustomerState

if TYPE_CHECKING:
    from scoring.policy import CompiledPolicy, Decision

#: Key of the stream worker's bookkeeping in ``CustomerState.tiers`` (``streams.decide.BOOKKEEPING``;
#: repeated here because ``scoring`` must not import ``streams``). Its ``"at"`` is the event time of the
#: worker's last evaluation of the customer.
BOOKKEEPING = "~"
#: Label of the matrix row of customers without a current tier (no stored record for the policy).
NO_TIER_LABEL = "(none)"


@dataclass(frozen=True, slots=True)
class Mover:
    """One customer whose tier would change: ``from_tier`` -> ``to_tier``.

    ``score`` is the new policy's score, ``from_score`` the current policy's score (or the stored score
    when comparing against stored tiers); either is None for rule-only policies or when not stored.
    """

    customer_id: str
    from_tier: str
    to_tier: str
    score: float | None
    from_score: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (field order as declared)."""
        return {"customer_id": self.customer_id, "from": self.from_tier, "to": self.to_tier,
                "score": self.score, "from_score": self.from_score}


@dataclass(frozen=True, slots=True)
class Migration:
    """The outcome of :func:`migration`.

    Invariants:
    - ``counts[i][j]`` is the number of customers going from ``rows[i]`` to ``columns[j]``; every
      evaluated customer is counted exactly once, so the cells sum to ``customers``.
    - ``rows`` is the current policy's tier order (highest first), then any stored tier the current
      policy does not have (sorted), then ``None`` (no current tier) when some customer has none;
      ``columns`` is the new policy's tier order. Rows and columns with zero counts are kept, so the
      matrix always shows both full tier ladders.
    - ``movers`` are the customers with a current tier different from the new one (by name), sorted by
      customer id; customers without a current tier are counted in ``unassigned``, never as movers.
    - ``share_changed = len(movers) / compared`` where ``compared = customers - unassigned`` (0.0 when
      nothing was compared).
    - ``skipped`` counts states that could not be evaluated (no event yet and no ``at`` given).
    """

    policy: str
    version: int
    against: str  # "<id> v<version>" of the current policy, or "stored tiers"
    at: datetime | None
    rows: tuple[str | None, ...]
    columns: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    movers: tuple[Mover, ...]
    customers: int
    unassigned: int
    skipped: int
    upgrades: int
    downgrades: int

    @property
    def compared(self) -> int:
        """Customers that had a current tier (the denominator of :attr:`share_changed`)."""
        return self.customers - self.unassigned

    @property
    def changed(self) -> int:
        """Customers whose tier would change."""
        return len(self.movers)

    @property
    def share_changed(self) -> float:
        """Share of compared customers whose tier would change, in [0, 1]."""
        return self.changed / self.compared if self.compared else 0.0

    def count(self, from_tier: str | None, to_tier: str) -> int:
        """Customers going from ``from_tier`` to ``to_tier`` (0 when either is not in the matrix)."""
        try:
            return self.counts[self.rows.index(from_tier)][self.columns.index(to_tier)]
        except ValueError:
            return 0

    def row_totals(self) -> tuple[int, ...]:
        """Customers per current tier, in ``rows`` order."""
        return tuple(sum(r) for r in self.counts)

    def column_totals(self) -> tuple[int, ...]:
        """Customers per new tier, in ``columns`` order."""
        return tuple(sum(r[j] for r in self.counts) for j in range(len(self.columns)))

    def to_dict(self, movers_limit: int | None = None) -> dict[str, Any]:
        """JSON-ready dict; ``movers_limit`` keeps only the first N movers (``movers_total`` has them all)."""
        movers = self.movers if movers_limit is None else self.movers[:movers_limit]
        return {
            "policy": self.policy,
            "version": self.version,
            "against": self.against,
            "at": None if self.at is None else self.at.isoformat(),
            "rows": [NO_TIER_LABEL if r is None else r for r in self.rows],
            "columns": list(self.columns),
            "matrix": [list(r) for r in self.counts],
            "customers": self.customers,
            "compared": self.compared,
            "unassigned": self.unassigned,
            "skipped": self.skipped,
            "changed": self.changed,
            "share_changed": self.share_changed,
            "upgrades": self.upgrades,
            "downgrades": self.downgrades,
            "movers_total": len(self.movers),
            "movers": [m.to_dict() for m in movers],
        }


def evaluation_time(state: CustomerState) -> datetime | None:
    """The event time at which the worker last decided ``state``: its bookkeeping ``"at"`` when stored,
    else the customer's newest event time; None for a state without events or bookkeeping.

    Re-scoring at this time changes nothing but the policy, so a difference is the policy's doing.
    """
    book = state.tiers.get(BOOKKEEPING)
    if book and book.get("at"):
        return datetime.fromisoformat(book["at"])
    return state.last_event_at


def migration(
    states: Iterable[CustomerState],
    new: CompiledPolicy,
    current: CompiledPolicy | None = None,
    at: datetime | None = None,
) -> Migration:
    """Evaluate every state under ``new`` (and ``current``) and tabulate the tier changes.

    Inputs: customer states (any iterable, consumed once; one state per customer), the new policy, the
    current policy or None (then each state's stored tier for ``new.id`` is the current tier), and the
    evaluation time: ``at`` for every customer, or None for each customer's own :func:`evaluation_time`.
    Output: a :class:`Migration` (see its invariants). Policies with tiers of different names are fine:
    rows follow the current tiers, columns the new ones, and every customer counts as a mover.
    """
    two_pass = new.needs_population or (current is not None and current.needs_population)
    entries: list[tuple[str, Mapping[str, Any], tuple[str | None, float | None]]] = []
    results: list[tuple[str, str | None, float | None, Decision]] = []
    skipped = 0
    for state in states:
        when = at if at is not None else evaluation_time(state)
        if when is None:
            skipped += 1
            continue
        view = state.features(when)
        stored = _stored(state, new.id) if current is None else (None, None)
        if two_pass:
            entries.append((state.customer_id, view, stored))  # both passes need every view
            continue
        if current is not None:
            d = current.evaluate(view)
            stored = (d.tier, d.score)
        results.append((state.customer_id, stored[0], stored[1], new.evaluate(view)))
    if two_pass:
        views = [v for _, v, _ in entries]
        new_ds = _evaluate_all(new, views)
        cur_ds = _evaluate_all(current, views) if current is not None else None
        for i, (cid, _, stored) in enumerate(entries):
            if cur_ds is not None:
                stored = (cur_ds[i].tier, cur_ds[i].score)
            results.append((cid, stored[0], stored[1], new_ds[i]))
    return _tabulate(results, new, current, at, skipped)


def rollout_guard(migration: Migration, max_share: float, force: bool) -> tuple[bool, str]:
    """Whether a rollout may go ahead: refused when more than ``max_share`` of the compared customers
    would change tier, unless ``force``. Returns ``(ok, reason)``; the reason is one human sentence.

    ``max_share`` is in [0, 1] (ValueError otherwise); a share exactly at the limit passes. With no
    customer to compare (no current tiers) the rollout passes: nothing held would change.
    """
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must be within [0, 1], got {max_share!r}")
    m = migration
    if m.compared == 0:
        return True, "no customer has a current tier: nothing would change"
    what = f"{m.changed} of {m.compared} customers ({m.share_changed:.1%}) would change tier"
    if m.share_changed <= max_share:
        return True, f"{what}, within the limit of {max_share:.1%}"
    if force:
        return True, f"{what}, above the limit of {max_share:.1%}; forced"
    return False, f"{what}, above the limit of {max_share:.1%}; refusing (force to roll out anyway)"


# ---------------------------------------------------------------------- helpers
def _stored(state: CustomerState, policy_id: str) -> tuple[str | None, float | None]:
    """The tier and score the worker stored for ``policy_id`` (``streams.decide`` record), or Nones."""
    record = state.tiers.get(policy_id)
    if not record or record.get("tier") is None:
        return None, None
    return record["tier"], record.get("score")


def _evaluate_all(policy: CompiledPolicy, views: Sequence[Mapping[str, Any]]) -> list[Decision]:
    """Decisions of ``policy`` for ``views``, ranked against their own population when it needs one."""
    decisions = [policy.evaluate(v) for v in views]
    if policy.needs_population:
        from scoring.replay import _population  # the one population builder replay uses too

        population = _population(policy.id, decisions)
        decisions = [policy.evaluate(v, population) for v in views]
    return decisions


def _tabulate(
    results: list[tuple[str, str | None, float | None, Decision]],
    new: CompiledPolicy,
    current: CompiledPolicy | None,
    at: datetime | None,
    skipped: int,
) -> Migration:
    base_rows: tuple[str, ...] = current.tiers if current is not None else new.tiers
    seen_from = {r[1] for r in results}
    # stored tiers the ladder does not have (a renamed tier of an older version) still get a row
    extra = sorted(t for t in seen_from if t is not None and t not in base_rows)
    rows: tuple[str | None, ...] = (*base_rows, *extra, *((None,) if None in seen_from else ()))
    columns = new.tiers
    row_index = {t: i for i, t in enumerate(rows)}
    col_index = {t: j for j, t in enumerate(columns)}
    grid = [[0] * len(columns) for _ in rows]
    movers: list[Mover] = []
    unassigned = upgrades = downgrades = 0
    for cid, from_tier, from_score, d in results:
        grid[row_index[from_tier]][col_index[d.tier]] += 1
        if from_tier is None:
            unassigned += 1
        elif from_tier != d.tier:
            movers.append(Mover(cid, from_tier, d.tier, d.score, from_score))
            # up/down only means something on one ladder: both tiers must be the new policy's
            if from_tier in col_index:
                if col_index[d.tier] < col_index[from_tier]:
                    upgrades += 1
                else:
                    downgrades += 1
    movers.sort(key=lambda m: m.customer_id)
    against = "stored tiers" if current is None else f"{current.id} v{current.version}"
    return Migration(
        policy=new.id, version=new.version, against=against, at=at, rows=rows, columns=columns,
        counts=tuple(tuple(r) for r in grid), movers=tuple(movers), customers=len(results),
        unassigned=unassigned, skipped=skipped, upgrades=upgrades, downgrades=downgrades,
    )
