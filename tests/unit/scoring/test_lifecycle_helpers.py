"""Lifecycle test helpers (imported by the other test_lifecycle_* files), and tests of the plumbing:
review calendar, track serialization, ledger as-of queries, purity and determinism, event conversion."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime

import pytest

from schemas.admin import ApproveProposal, RejectProposal, RemoveOverride, SetOverride
from schemas.outputs import TierChangeEvent, change_id
from scoring.lifecycle import (
    StepResult,
    TierTrack,
    apply_command,
    due_at,
    is_review,
    on_time,
    review_after,
    review_floor,
    review_on_or_after,
    step,
    tier_as_of,
)
from scoring.policy import CompiledPolicy, Decision, parse_policy

FEATURE = "assess.growth_potential"  # a plain float feature: the score is exactly the number we pass


def make_policy(lifecycle: str = "", review: str | None = "quarterly", bands: str | None = None,
                version: int = 1, extra: str = "") -> CompiledPolicy:
    """gold >= 80, silver [50, 80), bronze below; score = the value of FEATURE."""
    bands = bands or """
      - {tier: gold, ge: 80}
      - {tier: silver, ge: 50, lt: 80}
    """
    text = f"""
id: demo
version: {version}
{"review: " + review if review else ""}
tiers: [gold, silver, bronze]
score: {{feature: {FEATURE}}}
tier:
  bands:
    bands:
{textwrap.indent(textwrap.dedent(bands).strip(), "      ")}
    default: bronze
{extra}
"""
    if lifecycle:
        text += "lifecycle:\n" + textwrap.indent(textwrap.dedent(lifecycle).strip(), "  ") + "\n"
    return parse_policy(text, "demo.yaml")


def d(s: str) -> datetime:
    """``2024-03-01`` or ``2024-03-01T12:00`` as an aware UTC datetime."""
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


class Driver:
    """Feeds one customer's decisions, timers and commands through the engine, keeping the track and
    every output (so tests read like a timeline)."""

    def __init__(self, policy: CompiledPolicy, customer: str = "c1") -> None:
        self.policy = policy
        self.track = TierTrack(customer)
        self.results: list[StepResult] = []
        self.n = 0

    def _keep(self, r: StepResult) -> StepResult:
        self.track = r.track
        self.results.append(r)
        return r

    def decision(self, score: float, **features: object) -> Decision:
        return self.policy.evaluate({FEATURE: score, **features})

    def event(self, at: str, score: float, cause: str = "event", **features: object) -> StepResult:
        self.n += 1
        return self._keep(step(self.track, self.policy, self.decision(score, **features), d(at), cause, f"e{self.n}"))

    def time(self, at: str, score: float | None = None) -> StepResult:
        decision = None if score is None else self.decision(score)
        return self._keep(on_time(self.track, self.policy, decision, d(at)))

    def due(self) -> datetime | None:
        return due_at(self.track, self.policy)

    def command(self, what: str, at: str, **fields: object) -> StepResult:
        self.n += 1
        base = {"command_id": f"cmd{self.n}", "customer_id": self.track.customer_id, "policy": self.policy.id,
                "actor": "alice", "reason": "because"}
        model = {"set": SetOverride, "remove": RemoveOverride, "approve": ApproveProposal,
                 "reject": RejectProposal}[what]
        return self._keep(apply_command(self.track, self.policy, model(**{**base, **fields}), d(at)))

    def changes(self) -> list[tuple[str | None, str, str, datetime]]:
        """Every change so far: (from, to, cause, effective_at)."""
        return [(c.from_tier, c.to_tier, c.cause, c.effective_at) for r in self.results for c in r.changes]


# --------------------------------------------------------------------------------------------- calendar


@pytest.mark.parametrize(
    ("period", "t", "on_or_after", "after"),
    [
        ("quarterly", "2024-02-15", "2024-04-01", "2024-04-01"),
        ("quarterly", "2024-04-01", "2024-04-01", "2024-07-01"),  # a boundary is its own review date
        ("quarterly", "2024-12-31T23:59", "2025-01-01", "2025-01-01"),
        ("monthly", "2024-01-31T12:00", "2024-02-01", "2024-02-01"),
        ("half_yearly", "2024-07-01T00:00:01", "2025-01-01", "2025-01-01"),
        ("yearly", "2024-01-01", "2024-01-01", "2025-01-01"),
    ],
)
def test_review_dates_are_calendar_aligned_utc(period: str, t: str, on_or_after: str, after: str) -> None:
    assert review_on_or_after(period, d(t)) == d(on_or_after)
    assert review_after(period, d(t)) == d(after)
    assert is_review(period, d(on_or_after))
    assert review_floor(period, d(on_or_after)) == d(on_or_after)


def test_review_dates_use_utc_not_local_time() -> None:
    from datetime import timedelta, timezone

    # 2024-04-01 07:00 in UTC+8 is 2024-03-31 23:00 UTC: not yet the review date.
    local = datetime(2024, 4, 1, 7, 0, tzinfo=timezone(timedelta(hours=8)))
    assert not is_review("quarterly", local)
    assert review_on_or_after("quarterly", local) == d("2024-04-01")
    with pytest.raises(ValueError, match="timezone-aware"):
        review_floor("quarterly", datetime(2024, 4, 1))


# --------------------------------------------------------------------------------------------- track


def test_track_round_trips_through_json_and_stays_bounded() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 3}\nat_risk_days: 1\n"
                             "approvals: [{from: [gold], to: any, expires_after_days: 5}]"))
    drv.event("2024-01-01", 60)
    drv.command("set", "2024-01-02", kind="floor", tier="silver", expires_at=d("2024-06-01"))
    for day in range(2, 28):
        drv.event(f"2024-01-{day:02d}", 90 if day % 2 else 40)
    drv.event("2024-01-28", 10)
    t = drv.track
    assert t.pending is not None and t.override is not None
    raw = json.dumps(t.to_dict())
    assert TierTrack.from_dict(json.loads(raw)) == t
    assert len(t.ledger) <= 16 and len(t.commands) <= 16
    assert len(raw) < 3000


def test_empty_track_round_trips() -> None:
    t = TierTrack("c9")
    assert TierTrack.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_ledger_answers_tier_as_of() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-10", 60)  # silver
    drv.event("2024-02-10", 85)  # gold
    drv.event("2024-03-10", 30)  # bronze
    ledger = drv.track.ledger
    assert [(e[1], e[2], e[3]) for e in ledger] == [
        ("silver", 1, "event"), ("gold", 2, "event"), ("bronze", 3, "event")]
    assert tier_as_of(ledger, d("2024-01-09")) is None
    assert tier_as_of(ledger, d("2024-01-10")) == "silver"  # effective from its instant on
    assert tier_as_of(ledger, d("2024-02-09T23:59")) == "silver"
    assert tier_as_of(ledger, d("2024-02-10")) == "gold"
    assert tier_as_of(ledger, d("2030-01-01")) == "bronze"


def test_engine_is_pure_and_deterministic() -> None:
    policy = make_policy("downgrade: {mode: after_grace, grace_days: 5}\n"
                         "approvals: [{from: [gold], to: down, expires_after_days: 5}]")
    start = step(TierTrack("c1"), policy, policy.evaluate({FEATURE: 90}), d("2024-01-01"), "event", "e1").track
    before = start.to_dict()
    a = step(start, policy, policy.evaluate({FEATURE: 60}), d("2024-01-02"), "event", "e2")
    b = step(start, policy, policy.evaluate({FEATURE: 60}), d("2024-01-02"), "event", "e2")
    assert start.to_dict() == before  # the input track is untouched
    assert a.track.to_dict() == b.track.to_dict()
    later_a = on_time(a.track, policy, None, d("2024-01-07"))
    later_b = on_time(b.track, policy, None, d("2024-01-07"))
    assert later_a.proposed == later_b.proposed  # same proposal id on a replay
    assert later_a.proposed[0].proposal_id.startswith("p-")


def test_clock_never_runs_backwards() -> None:
    drv = Driver(make_policy())
    drv.event("2024-05-01", 60)
    r = drv.event("2024-04-01", 90)  # older than what the track has seen: treated as 2024-05-01
    assert r.changes[0].effective_at == d("2024-05-01")
    with pytest.raises(ValueError, match="timezone-aware"):
        step(drv.track, drv.policy, drv.decision(10), datetime(2024, 6, 1))


def test_change_converts_to_the_downstream_event() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-10", 60)
    r = drv.event("2024-02-10", 85)
    change = r.changes[0]
    decided = d("2024-02-10T00:00:03")
    event = change.to_event(decided, drv.decision(85).explanation)
    assert isinstance(event, TierChangeEvent)
    assert event.change_id == change_id("c1", "demo", 1, 2, "gold")
    assert (event.from_tier, event.to_tier, event.direction, event.cause, event.sequence) == (
        "silver", "gold", "up", "event", 2)
    assert event.event_id == "e2" and event.effective_at == d("2024-02-10") and event.decided_at == decided
    assert event.explanation["lifecycle"] == {"scored_tier": "gold", "held_tier": "gold", "override": None}
    assert event.explanation["tier"] == "gold"  # the decision's explanation is kept


def test_policy_change_reassigns_when_tiers_are_renamed() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-10", 60)  # silver
    renamed = parse_policy(f"""
id: demo
version: 2
tiers: [A, B]
score: {{feature: {FEATURE}}}
tier: {{bands: {{bands: [{{tier: A, ge: 70}}], default: B}}}}
""", "demo2.yaml")
    r = step(drv.track, renamed, renamed.evaluate({FEATURE: 60}), d("2024-02-01"), "policy_change")
    (c,) = r.changes
    assert (c.from_tier, c.to_tier, c.direction, c.cause, c.sequence, c.policy_version) == (
        "silver", "B", "new", "policy_change", 2, 2)


def test_resume_continues_an_existing_record() -> None:
    policy = make_policy("downgrade: {mode: at_review}")
    track = TierTrack.resume("c1", "gold", d("2024-01-05"), seq=4)
    r = step(track, policy, policy.evaluate({FEATURE: 60}), d("2024-02-01"), "event", "e9")
    assert r.changes == () and due_at(r.track, policy) == d("2024-04-01")
    (c,) = on_time(r.track, policy, None, d("2024-04-01")).changes
    assert (c.from_tier, c.to_tier, c.sequence) == ("gold", "silver", 5)
