"""The per customer, per policy lifecycle state (:class:`TierTrack`) and its tier ledger.

A track is plain data: the engine never mutates a track it is given (it works on a :meth:`TierTrack.clone`),
and :meth:`TierTrack.to_dict` / :meth:`TierTrack.from_dict` round-trip it through a small JSON-safe dict
(datetimes as RFC 3339 strings) for the stream's state table. It is bounded: the ledger keeps the last
:data:`LEDGER_MAX` changes and the command log the last :data:`COMMANDS_MAX` accepted command ids.

Three tiers are kept apart:
- ``scored``: what the policy's last decision said (visible, never hidden by an override);
- ``held``: the lifecycle's tier (after hysteresis, grace, reviews, approvals);
- ``tier``: the effective tier = ``held`` with the override applied; what reads and events show.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from schemas.admin import OverrideView

#: Most ledger entries a track keeps (the full history is the tier-change topic).
LEDGER_MAX = 16
#: Most accepted command ids a track remembers to apply a re-delivered command once.
COMMANDS_MAX = 16

#: (effective_at, tier, sequence, cause) of one effective tier change.
LedgerEntry = tuple[datetime, str, int, str]


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _dt(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


@dataclass(slots=True)
class Override:
    """A manual override: ``pin`` (exactly ``tier``), ``floor`` (at least) or ``ceiling`` (at most)."""

    kind: str
    tier: str
    actor: str
    reason: str
    set_at: datetime
    expires_at: datetime | None
    command_id: str

    def view(self) -> OverrideView:
        """The override as reads and outputs show it."""
        return OverrideView(
            kind=self.kind,  # type: ignore[arg-type]
            tier=self.tier,
            actor=self.actor,
            reason=self.reason,
            set_at=self.set_at,
            expires_at=self.expires_at,
            command_id=self.command_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"k": self.kind, "t": self.tier, "a": self.actor, "r": self.reason, "s": _iso(self.set_at),
                "x": _iso(self.expires_at), "c": self.command_id}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Override:
        """Inverse of :meth:`to_dict`."""
        return Override(d["k"], d["t"], d["a"], d["r"], _dt(d["s"]), _dt(d["x"]), d["c"])  # type: ignore[arg-type]


@dataclass(slots=True)
class Pending:
    """A change the scores ask for that has not taken effect yet.

    ``target`` is the latest scored tier (after hysteresis) on this side of the held tier; ``since`` when the
    customer first scored on this side (the grace clock: reset by any decision back at the held tier);
    ``due`` when it takes effect (None while a proposal is open or after a rejected/expired proposal);
    ``reason`` what ``due`` waits for: ``now``, ``grace``, ``min_days`` or ``review``; ``warned`` whether the
    at-risk warning for this ``due`` was emitted; ``blocked_to`` a destination whose proposal was rejected or
    expired, not proposed again until the destination changes or the customer recovers."""

    direction: str
    target: str
    since: datetime
    due: datetime | None = None
    reason: str = "now"
    warned: bool = False
    blocked_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"d": self.direction, "t": self.target, "s": _iso(self.since), "u": _iso(self.due),
                "r": self.reason, "w": self.warned, "b": self.blocked_to}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Pending:
        """Inverse of :meth:`to_dict`."""
        return Pending(d["d"], d["t"], _dt(d["s"]), _dt(d["u"]), d["r"], d["w"], d["b"])  # type: ignore[arg-type]


@dataclass(slots=True)
class Proposal:
    """An open proposal: ``from_tier`` -> ``to_tier`` waits for approval until ``expires``."""

    id: str
    from_tier: str
    to_tier: str
    created: datetime
    expires: datetime
    cause: str
    event_id: str | None
    rule: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"i": self.id, "f": self.from_tier, "t": self.to_tier, "c": _iso(self.created),
                "x": _iso(self.expires), "k": self.cause, "e": self.event_id, "r": self.rule}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Proposal:
        """Inverse of :meth:`to_dict`."""
        return Proposal(d["i"], d["f"], d["t"], _dt(d["c"]), _dt(d["x"]), d["k"], d["e"], d["r"])  # type: ignore[arg-type]


@dataclass(slots=True)
class TierTrack:
    """One customer's lifecycle under one policy. Start with ``TierTrack(customer_id)``.

    ``seq`` counts effective changes (one per change, from 1); ``at`` is the latest time the engine has
    processed (times before it are clamped to it, so the ledger stays ordered); ``keep`` is what keeps the
    held tier, from the last decision: (threshold, inclusive, value) of the banded number, or None.
    """

    customer_id: str
    tier: str | None = None
    since: datetime | None = None
    seq: int = 0
    held: str | None = None
    held_since: datetime | None = None
    scored: str | None = None
    score: float | None = None
    keep: tuple[float, bool, float] | None = None
    pending: Pending | None = None
    proposal: Proposal | None = None
    override: Override | None = None
    last_review: datetime | None = None
    at: datetime | None = None
    flip_flops: int = 0
    proposals: int = 0
    ledger: list[LedgerEntry] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @staticmethod
    def resume(customer_id: str, tier: str, since: datetime, seq: int, cause: str = "event") -> TierTrack:
        """A track for a customer who already holds ``tier`` since ``since`` after ``seq`` changes (e.g. a
        stream record written before the lifecycle existed): held = effective = ``tier``, the ledger starts
        with that change, so the next change gets ``seq + 1``."""
        return TierTrack(customer_id, tier=tier, since=since, seq=seq, held=tier, held_since=since,
                         ledger=[(since, tier, seq, cause)])

    def clone(self) -> TierTrack:
        """A copy sharing nothing mutable with ``self``."""
        return replace(
            self,
            pending=None if self.pending is None else replace(self.pending),
            proposal=None if self.proposal is None else replace(self.proposal),
            override=None if self.override is None else replace(self.override),
            ledger=list(self.ledger),
            commands=list(self.commands),
        )

    def override_view(self) -> OverrideView | None:
        """The active override as reads show it (``TierRecord.override`` = its JSON dump), or None."""
        return None if self.override is None else self.override.view()

    def to_dict(self) -> dict[str, Any]:
        """Small JSON-safe dict (orjson/json serialisable); None-valued optional parts are left out."""
        d: dict[str, Any] = {"c": self.customer_id, "q": self.seq, "ff": self.flip_flops, "np": self.proposals}
        for key, value in (
            ("t", self.tier), ("s", _iso(self.since)), ("h", self.held), ("hs", _iso(self.held_since)),
            ("sc", self.scored), ("sv", self.score), ("lr", _iso(self.last_review)), ("at", _iso(self.at)),
        ):
            if value is not None:
                d[key] = value
        if self.keep is not None:
            d["k"] = list(self.keep)
        if self.pending is not None:
            d["p"] = self.pending.to_dict()
        if self.proposal is not None:
            d["pr"] = self.proposal.to_dict()
        if self.override is not None:
            d["o"] = self.override.to_dict()
        if self.ledger:
            d["l"] = [[e[0].isoformat(), e[1], e[2], e[3]] for e in self.ledger]
        if self.commands:
            d["cm"] = list(self.commands)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TierTrack:
        """Inverse of :meth:`to_dict`."""
        keep = d.get("k")
        return TierTrack(
            customer_id=d["c"],
            tier=d.get("t"),
            since=_dt(d.get("s")),
            seq=d["q"],
            held=d.get("h"),
            held_since=_dt(d.get("hs")),
            scored=d.get("sc"),
            score=d.get("sv"),
            keep=None if keep is None else (float(keep[0]), bool(keep[1]), float(keep[2])),
            pending=Pending.from_dict(d["p"]) if "p" in d else None,
            proposal=Proposal.from_dict(d["pr"]) if "pr" in d else None,
            override=Override.from_dict(d["o"]) if "o" in d else None,
            last_review=_dt(d.get("lr")),
            at=_dt(d.get("at")),
            flip_flops=d["ff"],
            proposals=d["np"],
            ledger=[(datetime.fromisoformat(e[0]), e[1], e[2], e[3]) for e in d.get("l", ())],
            commands=list(d.get("cm", ())),
        )


def tier_as_of(ledger: list[LedgerEntry], t: datetime) -> str | None:
    """The effective tier at time ``t``: the last entry with ``effective_at <= t``; None before the first
    entry (or before the oldest kept entry of a bounded ledger: the tier-change topic has the rest)."""
    found = None
    for at, tier, _seq, _cause in ledger:
        if at > t:
            break
        found = tier
    return found
