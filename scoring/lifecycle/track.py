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

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from schemas.admin import OverrideView

#: Most ledger entries a track keeps (the full history is the tier-change topic).
LEDGER_MAX: Final = 16
#: Most accepted command ids a track remembers to apply a re-delivered command once.
COMMANDS_MAX: Final = 16

#: (effective_at, tier, sequence, cause) of one effective tier change.
LedgerEntry = tuple[datetime, str, int, str]


#: Memos of the datetime <-> text conversions of tracks. A track is decoded and re-encoded at every decision
#: of its customer, its times (since, held_since, ledger, pending dates) recur across decisions and every
#: policy's track of one decision has the same ``at``; formatting an aware datetime costs ~8x parsing one.
#: ``_PARSED``: text -> the datetime it parses to (one shared, immutable object per text), so the times a
#: track keeps are the same objects from decision to decision; ``_ISO``: ``id(datetime)`` -> (that very
#: object, its ``isoformat()``), valid only while the stored object *is* the one asked about (it is kept
#: alive by the entry, so its id cannot be reused meanwhile). Keyed by identity, not equality: equal
#: instants in different UTC offsets format differently. Both bounded: cleared when full.
_PARSED: Final[dict[str, datetime]] = {}
_ISO: Final[dict[int, tuple[datetime, str]]] = {}
_MEMO_MAX: Final = 1 << 14  # ~0.3 kB an entry: a few MB at most


def iso(t: datetime) -> str:
    """``t.isoformat()`` (memoized by identity, see :data:`_ISO`)."""
    hit = _ISO.get(id(t))
    if hit is not None and hit[0] is t:
        return hit[1]
    if len(_ISO) >= _MEMO_MAX:
        _ISO.clear()
    text = t.isoformat()
    _ISO[id(t)] = (t, text)
    return text


def parse_iso(text: str) -> datetime:
    """``datetime.fromisoformat(text)``, one shared object per text (see :data:`_PARSED`)."""
    t = _PARSED.get(text)
    if t is None:
        if len(_PARSED) >= _MEMO_MAX:
            _PARSED.clear()
        t = _PARSED[text] = datetime.fromisoformat(text)
    return t


def _iso(t: datetime | None) -> str | None:
    return None if t is None else iso(t)


def _dt(s: str | None) -> datetime | None:
    return None if s is None else parse_iso(s)


_fromiso: Final = parse_iso


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

    # An explicit __init__: the one @dataclass generates runs interpreted under mypyc (~0.1 µs for three fields,
    # more with more) against ~0.02 µs native; the stream builds these per decision and policy (session 17).
    def __init__(self, kind: str, tier: str, actor: str, reason: str, set_at: datetime, expires_at: datetime | None,
                 command_id: str) -> None:
        self.kind = kind
        self.tier = tier
        self.actor = actor
        self.reason = reason
        self.set_at = set_at
        self.expires_at = expires_at
        self.command_id = command_id

    # Pickle and copy by construction: a mypyc class with its own __init__ cannot be created empty, which is how
    # the default protocol copies (TypeError in the compiled build only; tests/unit/scoring/test_pickling.py).
    def __reduce__(self) -> tuple[type[Override], tuple[Any, ...]]:
        return (Override, (
            self.kind, self.tier, self.actor, self.reason, self.set_at, self.expires_at, self.command_id,
        ))

    def view(self) -> OverrideView:
        """The override as reads and outputs show it."""
        return OverrideView(
            kind=self.kind,
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

    # An explicit __init__: the one @dataclass generates runs interpreted under mypyc (~0.1 µs for three fields,
    # more with more) against ~0.02 µs native; the stream builds these per decision and policy (session 17).
    def __init__(self, direction: str, target: str, since: datetime, due: datetime | None = None, reason: str = "now",
                 warned: bool = False, blocked_to: str | None = None) -> None:
        self.direction = direction
        self.target = target
        self.since = since
        self.due = due
        self.reason = reason
        self.warned = warned
        self.blocked_to = blocked_to

    def __reduce__(self) -> tuple[type[Pending], tuple[Any, ...]]:
        return (Pending, (self.direction, self.target, self.since, self.due, self.reason, self.warned, self.blocked_to))

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

    # An explicit __init__: the one @dataclass generates runs interpreted under mypyc (~0.1 µs for three fields,
    # more with more) against ~0.02 µs native; the stream builds these per decision and policy (session 17).
    def __init__(self, id: str, from_tier: str, to_tier: str, created: datetime, expires: datetime, cause: str,
                 event_id: str | None, rule: int) -> None:
        self.id = id
        self.from_tier = from_tier
        self.to_tier = to_tier
        self.created = created
        self.expires = expires
        self.cause = cause
        self.event_id = event_id
        self.rule = rule

    def __reduce__(self) -> tuple[type[Proposal], tuple[Any, ...]]:
        return (Proposal, (
            self.id, self.from_tier, self.to_tier, self.created, self.expires, self.cause, self.event_id, self.rule,
        ))

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

    # An explicit __init__: the one @dataclass generates runs interpreted under mypyc (~0.1 µs for three fields,
    # more with more) against ~0.02 µs native; the stream builds these per decision and policy (session 17).
    def __init__(
        self, customer_id: str, tier: str | None = None, since: datetime | None = None, seq: int = 0,
        held: str | None = None, held_since: datetime | None = None, scored: str | None = None,
        score: float | None = None, keep: tuple[float, bool, float] | None = None, pending: Pending | None = None,
        proposal: Proposal | None = None, override: Override | None = None, last_review: datetime | None = None,
        at: datetime | None = None, flip_flops: int = 0, proposals: int = 0, ledger: list[LedgerEntry] | None = None,
        commands: list[str] | None = None,
    ) -> None:
        self.customer_id = customer_id
        self.tier = tier
        self.since = since
        self.seq = seq
        self.held = held
        self.held_since = held_since
        self.scored = scored
        self.score = score
        self.keep = keep
        self.pending = pending
        self.proposal = proposal
        self.override = override
        self.last_review = last_review
        self.at = at
        self.flip_flops = flip_flops
        self.proposals = proposals
        self.ledger = [] if ledger is None else ledger  # a fresh list each (the dataclass default_factory)
        self.commands = [] if commands is None else commands

    def __reduce__(self) -> tuple[type[TierTrack], tuple[Any, ...]]:
        return (TierTrack, (
            self.customer_id, self.tier, self.since, self.seq, self.held, self.held_since, self.scored, self.score,
            self.keep, self.pending, self.proposal, self.override, self.last_review, self.at, self.flip_flops,
            self.proposals, self.ledger, self.commands,
        ))

    @staticmethod
    def resume(customer_id: str, tier: str, since: datetime, seq: int, cause: str = "event") -> TierTrack:
        """A track for a customer who already holds ``tier`` since ``since`` after ``seq`` changes (e.g. a
        stream record written before the lifecycle existed): held = effective = ``tier``, the ledger starts
        with that change, so the next change gets ``seq + 1``."""
        return TierTrack(customer_id, tier=tier, since=since, seq=seq, held=tier, held_since=since,
                         ledger=[(since, tier, seq, cause)])

    def clone(self) -> TierTrack:
        """A copy sharing nothing mutable with ``self``.

        Built field by field (positional, in declaration order) rather than with ``dataclasses.replace``:
        the engine clones once per decision and policy, and ``replace`` costs several times as much. The
        nested parts are copied the same way; datetimes, strings and the ``keep`` tuple are immutable and
        shared."""
        p, pr, o = self.pending, self.proposal, self.override
        return TierTrack(
            self.customer_id, self.tier, self.since, self.seq, self.held, self.held_since, self.scored, self.score,
            self.keep,
            None if p is None else Pending(p.direction, p.target, p.since, p.due, p.reason, p.warned, p.blocked_to),
            None if pr is None else Proposal(pr.id, pr.from_tier, pr.to_tier, pr.created, pr.expires, pr.cause,
                                             pr.event_id, pr.rule),
            None if o is None else Override(o.kind, o.tier, o.actor, o.reason, o.set_at, o.expires_at, o.command_id),
            self.last_review, self.at, self.flip_flops, self.proposals, list(self.ledger), list(self.commands),
        )

    def override_view(self) -> OverrideView | None:
        """The active override as reads show it (``TierRecord.override`` = its JSON dump), or None."""
        return None if self.override is None else self.override.view()

    def to_dict(self) -> dict[str, Any]:
        """Small JSON-safe dict (orjson/json serialisable); None-valued optional parts are left out.

        Key order is fixed (c, q, ff, np, t, s, h, hs, sc, sv, lr, at, k, p, pr, o, l, cm): the stream stores
        this dict inside the customer state, whose bytes must be canonical. Written out key by key (not as
        a loop over pairs) because it runs once per decision and policy."""
        d: dict[str, Any] = {"c": self.customer_id, "q": self.seq, "ff": self.flip_flops, "np": self.proposals}
        if self.tier is not None:
            d["t"] = self.tier
        if self.since is not None:
            d["s"] = iso(self.since)
        if self.held is not None:
            d["h"] = self.held
        if self.held_since is not None:
            d["hs"] = iso(self.held_since)
        if self.scored is not None:
            d["sc"] = self.scored
        if self.score is not None:
            d["sv"] = self.score
        if self.last_review is not None:
            d["lr"] = iso(self.last_review)
        if self.at is not None:
            d["at"] = iso(self.at)
        if self.keep is not None:
            d["k"] = list(self.keep)
        if self.pending is not None:
            d["p"] = self.pending.to_dict()
        if self.proposal is not None:
            d["pr"] = self.proposal.to_dict()
        if self.override is not None:
            d["o"] = self.override.to_dict()
        if self.ledger:
            d["l"] = [[iso(e[0]), e[1], e[2], e[3]] for e in self.ledger]
        if self.commands:
            d["cm"] = list(self.commands)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TierTrack:
        """Inverse of :meth:`to_dict` (positional construction, in declaration order: hot in the stream)."""
        keep = d.get("k")
        since, held_since, last_review, at = d.get("s"), d.get("hs"), d.get("lr"), d.get("at")
        pending, proposal, override = d.get("p"), d.get("pr"), d.get("o")
        ledger = d.get("l")
        commands = d.get("cm")
        return TierTrack(
            d["c"],
            d.get("t"),
            None if since is None else _fromiso(since),
            d["q"],
            d.get("h"),
            None if held_since is None else _fromiso(held_since),
            d.get("sc"),
            d.get("sv"),
            None if keep is None else (float(keep[0]), bool(keep[1]), float(keep[2])),
            None if pending is None else Pending.from_dict(pending),
            None if proposal is None else Proposal.from_dict(proposal),
            None if override is None else Override.from_dict(override),
            None if last_review is None else _fromiso(last_review),
            None if at is None else _fromiso(at),
            d["ff"],
            d["np"],
            [] if not ledger else [(_fromiso(e[0]), e[1], e[2], e[3]) for e in ledger],
            [] if not commands else list(commands),
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
