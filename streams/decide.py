"""Tier decisions of one customer (pure): scores -> lifecycle -> outputs, and the customer's next due time.

Per customer and policy the state keeps one record (``CustomerState.tiers[policy_id]``)::

    {"tier": effective tier, "pv": policy version, "score": latest score,
     "lc": the lifecycle track (scoring.lifecycle.TierTrack.to_dict()),
     "re": the outputs of the last REEMIT_KEEP event-caused steps that had any, oldest first, for
           re-emission after a crash (a dict of one step in states written before session 2),
     "fk": the feature key of the last decision, when its step was the lifecycle's fast path}

plus the stream's bookkeeping under :data:`BOOKKEEPING` (last evaluation time, next due time, revision).
Every output leaves through an :class:`Effects` collector, in the order it happened.

**Elision.** Most decisions change nothing: a login on a day already counted, a payment no policy reads.
A policy's ``evaluate`` is a pure function of the features it reads (``features_used``), and a lifecycle
step that confirms the held tier with nothing scheduled only notes the decision and moves the track's
clock. So when the digest of those features (``fk``) equals the one stored by such a step, and the track
is still in that state, the policy is neither evaluated nor stepped: its record is kept with the clock
moved, exactly what the step would have stored, and its read-model record is built from the stored track
(the same content, with this decision's ``version`` and ``updated_at``). Every output, read-model record
and stored state is the full computation's (tests/unit/streams/test_elision.py; bench/bench_hotpath.py's
``decisions`` and ``states`` digests). Policies with a shadow are never elided.

A ``days_since_*`` feature that a policy only compares with constants enters the key as its position among
them, not its value (scoring.policy.compared): its decision sees nothing more, so rfm and sabcd are elided
too. And the key need not always be computed: when the events since the last decision touched none of the
state parts the policy's features read (``CustomerState.touched``, ``scoring.features.feature_inputs``) and
the decision time is before the due time the last decision scheduled (no window exit, anniversary, threshold
crossing, review or lifecycle timer in between: :func:`_still`), the features have the values the stored key
digests, and the policy is elided *unread*. When every policy is, the features are not computed at all and
the stored due time stands. With
``rewrite_elided=False`` the read-model record of an elided decision is left out: Redis keeps the same
content with an older ``version`` and ``updated_at``, and takes about half the writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from schemas.admin import CommandResult, ProposalClosed, SetOverride, TierAtRisk, TierChangeProposed
from schemas.outputs import TierChangeEvent, change_id
from schemas.readmodel import RoutingHints, TierRecord
from scoring.features import feature_inputs, time_sources
from scoring.lifecycle import StepResult, TierTrack, apply_command, due_at, step_owned
from scoring.lifecycle.machine import utc
from scoring.lifecycle.track import iso, parse_iso
from scoring.policy import CompiledPolicy, Decision
from scoring.policy.compared import position
from scoring.rollout import pair_shadows, shadow_diff
from scoring.state import CustomerState
from scoring.timers import CONTINUOUS_PREFIX, earliest, next_review, next_threshold_crossing

#: Event-caused steps with outputs kept per customer and policy for re-emission after a crash. A kill -9 can
#: lose the outputs of the last three batches at most: one flush covers the previous batch's outputs, and
#: since session 10 one batch's outputs are in flight while the next is decided (streams.worker.Worker.follow).
#: One more is kept as margin.
REEMIT_KEEP: Final = 4

#: Key in ``CustomerState.tiers`` for the stream's own bookkeeping; every other key is a policy id.
BOOKKEEPING: Final = "~"

_ROUTING_FIELDS: Final = frozenset(RoutingHints.model_fields)

AdminCommand = Any  # one of schemas.admin's command models

_EXPLANATION: Final = {"explanation"}  # a set: model_dump's ``exclude`` type
assert list(TierChangeEvent.model_fields)[-1] == "explanation"  # _record relies on it (stored key order)


@dataclass(slots=True)
class Effects:
    """What decisions produced, for the binding to carry out."""

    tier_changes: list[TierChangeEvent] = field(default_factory=list)
    notices: list[BaseModel] = field(default_factory=list)  # proposals, closures, at-risk warnings
    audit: list[CommandResult] = field(default_factory=list)
    read_model: list[TierRecord] = field(default_factory=list)
    moves: list[tuple[int, str, str | None, str]] = field(default_factory=list)  # (partition, policy, from, to)
    flip_flops: dict[str, int] = field(default_factory=dict)
    due: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)  # customer -> (partition, due)
    # (partition, customer, policy) -> (proposal open, override kind or None), after this batch
    flags: dict[tuple[int, str, str], tuple[bool, str | None]] = field(default_factory=dict)
    shadow: dict[tuple[str, ...], int] = field(default_factory=dict)  # ShadowDiff labels -> count
    shadow_evaluations: dict[tuple[str, str], int] = field(default_factory=dict)  # (policy, version) -> count
    elided: dict[str, int] = field(default_factory=dict)  # policy -> decisions elided (module docstring)


    def merge(self, other: Effects) -> None:
        """Append ``other``'s effects after this one's (later read-model records win in Redis by version)."""
        self.tier_changes.extend(other.tier_changes)
        self.notices.extend(other.notices)
        self.audit.extend(other.audit)
        self.read_model.extend(other.read_model)
        self.moves.extend(other.moves)
        for key, n in other.flip_flops.items():
            self.flip_flops[key] = self.flip_flops.get(key, 0) + n
        self.due.update(other.due)
        self.flags.update(other.flags)
        for labels, n in other.shadow.items():
            self.shadow[labels] = self.shadow.get(labels, 0) + n
        for evaluated, n in other.shadow_evaluations.items():
            self.shadow_evaluations[evaluated] = self.shadow_evaluations.get(evaluated, 0) + n
        for policy, n in other.elided.items():
            self.elided[policy] = self.elided.get(policy, 0) + n


class Decider:
    """Applies decisions and commands to customer states with the loaded policies."""

    def __init__(
        self,
        policies: Sequence[CompiledPolicy],
        thresholds: Mapping[str, tuple[float, ...]],
        shadows: Sequence[CompiledPolicy] = (),
        *,
        elide: bool = True,
        rewrite_elided: bool = True,
    ) -> None:
        """``elide=False`` runs every policy's evaluation and step at every decision (tests compare the two).
        ``rewrite_elided=False``: an elided decision produces no read-model record (Redis already holds its
        content; only ``version`` and ``updated_at`` would change): TIERSTREAM_READ_MODEL_REWRITE_UNCHANGED."""
        self.rewrite_elided = rewrite_elided
        self.policies = tuple(policies)
        # shadow policy by live policy id: scored on the same features, compared, never emitted
        self.shadows = {live.id: shadow for live, shadow in pair_shadows(self.policies, shadows)}
        self.by_id = {p.id: p for p in self.policies}
        #: the distinct review schedules of the policies (eleven presets use four): one review date each
        self.reviews = tuple(dict.fromkeys(p.review for p in self.policies if p.review is not None))
        self.thresholds = dict(thresholds)
        # Window exits, month turns, ... of features no loaded policy (live or shadow) reads change no
        # decision: the next due time considers only the sources of the features read, so customers are
        # not woken (loaded, decided, found unchanged) for windows nobody uses.
        self.sources = time_sources(
            name for p in (*self.policies, *self.shadows.values()) for name in p.features_used)
        # Per policy, the features its decision reads, in a fixed order (the feature key, see
        # _feature_key); None for a policy with a shadow, which is never elided (its shadow is compared
        # at every decision, and the comparisons are counted).
        self._keyed: tuple[tuple[CompiledPolicy, tuple[str, ...] | None], ...] = tuple(
            (p, None if not elide or p.id in self.shadows else tuple(sorted(p.features_used)))
            for p in self.policies)
        # Per policy, the state parts its features read (scoring.features.feature_inputs): when the events
        # since the last decision touched none of them and no feature can have moved with time since then
        # (_still), the policy is elided without computing a feature (module docstring).
        # A days_since_* feature changes with time alone: the stored due time covers it only at the thresholds
        # it is compared with (scoring.policy.compared, scheduled through ``thresholds``); a policy reading one
        # otherwise (a linear scale, bands of it) changes at every instant, so it is never elided unread.
        self._inputs = {p.id: feature_inputs(p.features_used) if _scheduled(p, self.thresholds) else None
                        for p in self.policies}

    # ------------------------------------------------------------------ decisions
    def decide(
        self,
        state: CustomerState,
        partition: int,
        at: datetime,
        cause: str,
        event_id: str | None,
        now: datetime,
        fx: Effects,
        *,
        keep_unchanged: bool = True,
    ) -> bool:
        """Score ``state`` at event time ``at`` with every policy, run each lifecycle, emit what changed,
        and schedule the customer's next due time. Returns whether anything beyond the evaluation time
        and scores changed (an output, a tier, a lifecycle state): a decay that changed nothing need not
        be stored, since re-running it decides the same.

        ``keep_unchanged=False`` (decay): when nothing changed, no read-model records are produced (the
        caller keeps neither them nor the state; the read model's revision lives in the state). Every other
        effect is the same either way. An elided policy (module docstring) produces the same effects as
        its full evaluation."""
        touched, state.touched = state.touched, 0  # this decision accounts for the parts changed so far
        tiers = state.tiers
        still = _still(tiers.get(BOOKKEEPING), at)
        features: Mapping[str, Any] | None = None  # computed on first need: every policy may be elided
        revision = self._bump(state)
        outputs = len(fx.tier_changes) + len(fx.notices)
        tracks: dict[str, TierTrack] = {}
        reads: list[TierRecord | None] = []
        changed = False
        shown: dict[str, str] = {}  # feature -> repr of its value, shared by the policies' keys
        unread = 0  # policies elided without reading a feature
        for policy, names in self._keyed:
            record = tiers.get(policy.id)
            key = None
            if names is not None and record is not None:  # a first decision is never a fast-path step
                inputs = self._inputs[policy.id]
                if still and inputs is not None and not touched & inputs and "fk" in record:
                    # Nothing the policy reads changed since the last decision, by event or by time: its
                    # features have the values of the stored key, which need not be computed to compare.
                    key = record["fk"]
                    same = _idle(record, policy)
                    unread += same
                else:
                    if features is None:
                        features = state.features(at)
                    key = _feature_key(features, names, policy.compared, shown)
                    same = record.get("fk") == key and _idle(record, policy)
                if same:
                    # Elided: the same features as the stored step, which confirmed the held tier with
                    # nothing scheduled, so the policy decides the same and the step would only note it
                    # again (the lifecycle's fast path). Its effects are the track's clock and the
                    # read-model record of the decision (same content, this revision and time).
                    record = tiers[policy.id] = _advanced(record, at)
                    if self.rewrite_elided:
                        reads.append(_idle_read_record(state.customer_id, policy, record, revision, now))
                    fx.elided[policy.id] = fx.elided.get(policy.id, 0) + 1
                    continue
            if features is None:
                features = state.features(at)
            decision = policy.evaluate(features)
            shadow = self.shadows.get(policy.id)
            if shadow is not None:
                self._shadow(decision, shadow.evaluate(features), fx)
            before = None if record is None else record.get("lc")  # _record replaces the record, never edits it
            if key is not None and not _fast_path(record, policy, decision):
                key = None  # only a fast-path step is one an identical decision repeats exactly
            # the track is decoded for this step alone: hand it over (no defensive copy)
            result = step_owned(self._track(state.customer_id, record), policy, decision, at, cause, event_id)
            reads.append(self._record(state, partition, policy, decision, result, event_id, now, revision, fx, key))
            tracks[policy.id] = result.track
            if not changed and not _same_stable(before, tiers[policy.id]["lc"]):
                changed = True
        if unread == len(self._keyed) and unread:
            # Every policy elided unread: nothing a loaded policy reads changed, so the next due time is the
            # one stored (_still: it is after ``at``, and no feature, threshold crossing or review falls
            # between the last decision and it); only the evaluation time moves, as _schedule would move it.
            book = tiers[BOOKKEEPING]
            book["at"] = iso(at)
            due = book.get("due")
            fx.due[state.customer_id] = (partition, None if due is None else parse_iso(due))
        else:
            self._schedule(state, partition, at, features if features is not None else state.features(at),
                           tracks, fx)
        changed = changed or len(fx.tier_changes) + len(fx.notices) > outputs
        if changed or keep_unchanged:
            fx.read_model.extend(read for read in reads if read is not None)
        return changed

    def command(
        self, state: CustomerState, partition: int, command: AdminCommand, at: datetime, now: datetime, fx: Effects
    ) -> None:
        """Apply one validated admin command (override, approval) at wall-clock ``at``; audit it."""
        policy = self.by_id.get(command.policy)
        if policy is None:
            fx.audit.append(CommandResult(
                command_id=command.command_id, accepted=False, reason=f"unknown policy {command.policy!r}",
                command=command.type, customer_id=command.customer_id, policy=command.policy,
                actor=command.actor, at=at))
            return
        if state.last_event_at is None and not isinstance(command, SetOverride):
            fx.audit.append(CommandResult(
                command_id=command.command_id, accepted=False, reason="unknown customer",
                command=command.type, customer_id=command.customer_id, policy=command.policy,
                actor=command.actor, at=at))
            return
        record = state.tiers.get(policy.id)
        result = apply_command(self._track(state.customer_id, record), policy, command, at)
        if result.command is not None:
            fx.audit.append(result.command)
        decision = Decision(policy.id, policy.version, result.track.scored or result.track.tier or policy.tiers[-1],
                            result.track.score, {}, None)
        read = self._record(state, partition, policy, decision, result, None, now, self._bump(state), fx)
        if read is not None:
            fx.read_model.append(read)
        book = state.tiers.get(BOOKKEEPING) or {}
        last = datetime.fromisoformat(book["at"]) if book.get("at") else at
        tracks = {p.id: self._track(state.customer_id, state.tiers[p.id]) for p in self.policies if p.id in state.tiers}
        self._schedule(state, partition, last, state.features(last), tracks, fx)

    def reemit(self, state: CustomerState, replayed: set[str], fx: Effects) -> None:
        """Re-send the stored outputs of each policy's recent event-caused steps whose causing event was just
        replayed, in their original order (the state was written before they were produced, so they may
        never have left: see streams.batch).

        Not only the last step: after a kill -9 the local store can hold the state of a later batch whose
        changelog write and the earlier batch's outputs were both still in the producer's buffer; replay
        then re-delivers both batches' events as duplicates, and both steps' outputs must go out again
        (regression: the kill -9 test saw a tier-change sequence gap, 1 and 3 without 2)."""
        if state.last_event_at is None:
            return
        features = None
        for policy in self.policies:
            record = state.tiers.get(policy.id)
            if not record or record.get("pv") != policy.version:
                continue
            for saved in _replayable(record):
                if saved.get("eid") not in replayed:
                    continue
                features = features or state.features(state.last_event_at)
                explanation = policy.evaluate(features).explanation
                for dump in saved.get("changes", ()):
                    lifecycle = dump.get("explanation", {}).get("lifecycle")
                    fx.tier_changes.append(TierChangeEvent.model_validate(
                        {**dump, "explanation": {**explanation, "lifecycle": lifecycle}}))
                for kind, dump in saved.get("notices", ()):
                    fx.notices.append(_NOTICE_TYPES[kind].model_validate(dump))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _shadow(live: Decision, shadow: Decision, fx: Effects) -> None:
        key = (live.policy, str(shadow.version))
        fx.shadow_evaluations[key] = fx.shadow_evaluations.get(key, 0) + 1
        diff = shadow_diff(live, shadow)
        if diff is not None:
            fx.shadow[tuple(diff)] = fx.shadow.get(tuple(diff), 0) + 1

    @staticmethod
    def _track(customer_id: str, record: Mapping[str, Any] | None) -> TierTrack:
        if record is None:
            return TierTrack(customer_id)
        return TierTrack.from_dict(record["lc"])

    @staticmethod
    def _bump(state: CustomerState) -> int:
        # The read model's version: one per decision or command, so Redis accepts every newer write and
        # never an older one; deterministic because decisions replay identically (streams.batch).
        book = state.tiers.setdefault(BOOKKEEPING, {})
        book["rev"] = int(book.get("rev", 0)) + 1
        return int(book["rev"])

    def _record(
        self,
        state: CustomerState,
        partition: int,
        policy: CompiledPolicy,
        decision: Decision,
        result: StepResult,
        event_id: str | None,
        now: datetime,
        revision: int,
        fx: Effects,
        key: str | None = None,
    ) -> TierRecord | None:
        """Store the policy's new record in ``state`` and hand its outputs to ``fx``; returns the read-model
        record of this decision (the caller adds it to ``fx.read_model``), None before a first tier.

        ``key``: the feature key of ``decision`` when the step was the lifecycle's fast path (stored as
        ``fk``: the next decision with the same key is elided); None otherwise (commands, other steps)."""
        previous = state.tiers.get(policy.id)
        record: dict[str, Any] = {
            "tier": result.tier,
            "pv": policy.version,
            "score": decision.score,
            "lc": result.track.to_dict(),
        }
        changes = [c.to_event(now, decision.explanation) for c in result.changes]
        notices: list[BaseModel] = [*result.proposed, *result.closed, *result.at_risk]
        kept = _replayable(previous)
        if (changes or notices) and event_id is not None:
            kept = [*kept[-(REEMIT_KEEP - 1):], {
                "eid": event_id,
                # the explanation is stored reduced to its lifecycle part (re-emission recomputes the rest):
                # not serialized only to be dropped; it is the model's last field, so the key order is kept
                "changes": [c.model_dump(mode="json", by_alias=True, exclude=_EXPLANATION) | {"explanation": {
                    "lifecycle": c.explanation.get("lifecycle")}} for c in changes],
                "notices": [[type(n).__name__, n.model_dump(mode="json")] for n in notices],
            }]
        if kept:
            record["re"] = kept
        if key is not None:
            record["fk"] = key
        state.tiers[policy.id] = record
        for change in result.changes:
            fx.moves.append((partition, policy.id, change.from_tier, change.to_tier))
        fx.tier_changes.extend(changes)
        fx.notices.extend(notices)
        if result.flip_flops:
            fx.flip_flops[policy.id] = fx.flip_flops.get(policy.id, 0) + result.flip_flops
        track = result.track
        fx.flags[(partition, state.customer_id, policy.id)] = (
            track.proposal is not None, None if track.override is None else track.override.kind)
        return read_record(state.customer_id, policy, track, decision.score, revision, now)

    def _schedule(
        self,
        state: CustomerState,
        partition: int,
        at: datetime,
        features: Mapping[str, Any],
        tracks: Mapping[str, TierTrack],
        fx: Effects,
    ) -> None:
        """Record the evaluation time and the next due time (``tracks``: each policy's current track)."""
        due = earliest(
            state.next_change_at(at, self.sources),
            next_threshold_crossing(features, at, self.thresholds),
            *(next_review(at, review) for review in self.reviews),
            *(due_at(tracks[p.id], p) for p in self.policies if p.id in tracks),
        )
        book = state.tiers.setdefault(BOOKKEEPING, {})
        book["at"] = iso(at)
        book["due"] = iso(due) if due else None
        fx.due[state.customer_id] = (partition, due)


#: Lifecycle track fields that move on every evaluation (time, score, keep margin) without changing
#: what the customer holds or what is pending.
_VOLATILE: Final = frozenset({"at", "sv", "k"})  # spelled out in _same_stable (hot)


_ABSENT: Final = object()


def _same_stable(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """``_stable(a) == _stable(b)`` without building the two filtered dicts (once per decision and policy)."""
    if a is None or b is None:
        return a is b
    # equal numbers of stable keys, and each of a's stable keys in b with an equal value: the same keys
    if len(a) - ("at" in a) - ("sv" in a) - ("k" in a) != len(b) - ("at" in b) - ("sv" in b) - ("k" in b):
        return False
    for k, v in a.items():  # noqa: SIM110 -- a plain loop: all() over a generator costs more (hot)
        if k not in _VOLATILE and b.get(k, _ABSENT) != v:
            return False
    return True


def _feature_key(
    features: Mapping[str, Any],
    names: Sequence[str],
    compared: Mapping[str, tuple[Any, ...]] | None = None,
    shown: dict[str, str] | None = None,
) -> str:
    """A digest of what the policy's ``evaluate`` sees of ``features``: equal keys = equal decisions.

    ``evaluate`` is a pure function of the features it reads (``CompiledPolicy.features_used``, ``names``).
    Of a continuous feature it only compares with constants (``compared``: scoring.policy.compared) it sees
    only the value's position among them, so that position stands for the value; every other feature is
    taken by value. ``shown`` caches the values' ``repr`` across the policies of one decision (they share
    most features); pass a fresh dict per decision (per feature view).

    ``repr`` is deterministic for every feature value (numbers, Decimal, str, datetimes, JSON attributes),
    unlike ``hash`` (salted per process for strings): the key is stored in the state, and a restarted worker
    or the batch replay must find the same one. The digested text is ``repr`` of the list of values (of
    positions for compared features): keys stored by earlier versions stay valid. 64 bits of blake2b: a
    collision (two different inputs taken for the same, ~2^-64 per comparison) is the one way an elision
    could be wrong."""
    if shown is None:
        shown = {}
    parts = []
    for name in names:
        thresholds = compared.get(name) if compared else None
        if thresholds is not None:
            parts.append(repr(position(features.get(name), thresholds)))
            continue
        text = shown.get(name)
        if text is None:
            text = shown[name] = repr(features.get(name))
        parts.append(text)
    return hashlib.blake2b(("[" + ", ".join(parts) + "]").encode(), digest_size=8).hexdigest()


def _scheduled(policy: CompiledPolicy, thresholds: Mapping[str, tuple[float, ...]]) -> bool:
    """Whether every continuous (``days_since_*``) feature ``policy`` reads changes its decision only at
    instants the decay schedule wakes the customer: the policy only compares it with constants, and each of
    them is among the thresholds scheduled (``scoring.timers.next_threshold_crossing``)."""
    for name in policy.features_used:
        if name.startswith(CONTINUOUS_PREFIX):
            compared = policy.compared.get(name)
            if compared is None or not set(compared) <= set(thresholds.get(name, ())):
                return False
    return True


def forget_keys(state: CustomerState) -> None:
    """Drop every policy's stored feature key (``fk``) from ``state``: its next decision evaluates every
    policy and keys the fast-path steps afresh. For a state whose features changed with no decision."""
    tiers = state.tiers
    for name, record in list(tiers.items()):
        if name != BOOKKEEPING and isinstance(record, dict) and "fk" in record:
            tiers[name] = {k: v for k, v in record.items() if k != "fk"}
    state.touched = 0


def _still(book: Mapping[str, Any] | None, at: datetime) -> bool:
    """Whether no feature a loaded policy reads can have moved with time alone between the customer's last
    decision and ``at``: ``at`` is not before that decision's time and is before the next due time it
    scheduled (the earliest window exit, month turn, anniversary, ``days_since_*`` threshold crossing, review
    date or lifecycle timer after it; none: nothing scheduled)."""
    if not book:
        return False
    last = book.get("at")
    if last is None or at < parse_iso(last):  # aware datetimes compare as instants, whatever their offsets
        return False
    due = book.get("due")
    return due is None or at < parse_iso(due)


def _fast_path(record: Mapping[str, Any] | None, policy: CompiledPolicy, decision: Decision) -> bool:
    """Whether the lifecycle step of ``decision`` on the stored ``record`` takes the engine's fast path
    (``scoring.lifecycle.engine._step``: nothing scheduled, the decision confirms the held tier), whose only
    effect is to note the decision (scored tier, score, keep) and advance the clock. Mirrors its test on the
    stored track dict."""
    return record is not None and decision.tier == record["lc"].get("h") and _settled(record["lc"], policy)


def _idle(record: Mapping[str, Any], policy: CompiledPolicy) -> bool:
    """Whether a stored record whose feature key matches may be elided: written by this policy version,
    its track still as the fast path left it (scored = held, nothing scheduled, a clock), and its
    re-emission list in the current form (an elision copies the record as is)."""
    if record.get("pv") != policy.version or isinstance(record.get("re"), dict):
        return False
    lc = record["lc"]
    return lc.get("sc") == lc.get("h") and "at" in lc and _settled(lc, policy)


def _settled(lc: Mapping[str, Any], policy: CompiledPolicy) -> bool:
    """A track dict holding a tier of ``policy`` with nothing scheduled: no pending change, proposal or
    override (the engine's fast-path condition, apart from the decision)."""
    held = lc.get("h")
    return held is not None and held in policy.tiers and "p" not in lc and "pr" not in lc and "o" not in lc


def _advanced(record: dict[str, Any], at: datetime) -> dict[str, Any]:
    """``record`` with its track's clock moved to ``at`` as the fast-path step would (never backwards):
    the stored record such a step would write, since an identical decision notes identical values."""
    lc = record["lc"]
    at = utc(at)
    if parse_iso(lc["at"]) >= at:
        return record
    return {**record, "lc": {**lc, "at": iso(at)}}  # "at" keeps its place: the state's bytes stay canonical


def read_record(
    customer_id: str, policy: CompiledPolicy, track: TierTrack, score: float | None, revision: int, now: datetime
) -> TierRecord | None:
    """The read-model record of one customer under one policy (None before the first decision)."""
    if track.tier is None:
        return None
    view = track.override_view()
    return _built_record(customer_id, policy, track.tier, track.scored, score, track.since or now,
                         None if view is None else view.model_dump(mode="json"), revision, track.seq, now)


def _built_record(
    customer_id: str, policy: CompiledPolicy, tier: str, scored: str | None, score: float | None, since: datetime,
    override: dict[str, Any] | None, revision: int, seq: int, now: datetime,
) -> TierRecord:
    """The read-model record of these values. Built without validation: one per policy per decision (eleven
    presets: ~6 % of the batch core in validation alone), from values our own typed code made;
    bench/bench_hotpath.py's decisions digest (which serializes every record) is identical either way. The
    field dict is in TierRecord's field order (what model_construct builds, and what its serializer walks)."""
    return _unchecked_record({
        "policy_version": policy.version,
        "tier": tier,
        "scored_tier": scored,
        "score": score,
        "since": since,
        "override": override,
        "version": revision,
        "sequence": seq,
        "change_id": _change_id(customer_id, policy.id, policy.version, seq, tier) if seq else None,
        "updated_at": now,
        "routing": _routing(policy, tier),
        "customer_id": customer_id,
        "policy": policy.id,
    })


def _idle_read_record(
    customer_id: str, policy: CompiledPolicy, record: Mapping[str, Any], revision: int, now: datetime
) -> TierRecord | None:
    """:func:`read_record` of an idle stored record (see :func:`_idle`: no override) read from its track
    dict, without decoding the track: the record an elided decision would have written."""
    lc = record["lc"]
    tier = lc.get("t")
    if tier is None:
        return None
    since = lc.get("s")
    return _built_record(customer_id, policy, tier, lc.get("sc"), record.get("score"),
                         parse_iso(since) if since is not None else now, None, revision, lc["q"], now)


_RECORD_FIELDS: Final = frozenset(TierRecord.model_fields)
_new: Final = object.__new__
_set: Final = object.__setattr__


def _unchecked_record(values: dict[str, Any]) -> TierRecord:
    """A TierRecord of ``values`` (every field, in field order), as ``model_construct`` makes it but
    without its per-call walk over the fields: 0.5 µs instead of 5.5 µs (timeit; under cProfile
    model_construct was 6 % of bench_hotpath at 20,000 customers). Every field is set, so the fields-set is
    all of them (a fresh set: ``model_copy`` updates it). Equality, dumps and copies are model_construct's
    (tests/unit/streams/test_decide.py)."""
    record = _new(TierRecord)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(_RECORD_FIELDS))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


#: change_id's inputs -> change_id: a read-model record names its track's last change, the same one at
#: every decision until the next change, and the id is a blake2b digest (~1 µs). Bounded: cleared when full.
_CHANGE_IDS: Final[dict[tuple[str, str, int, int, str], str]] = {}
_CHANGE_IDS_MAX: Final = 1 << 14  # ~0.3 kB an entry


def _change_id(customer_id: str, policy: str, version: int, sequence: int, tier: str) -> str:
    """:func:`schemas.outputs.change_id`, memoized (a pure function of its arguments)."""
    key = (customer_id, policy, version, sequence, tier)
    cid = _CHANGE_IDS.get(key)
    if cid is None:
        if len(_CHANGE_IDS) >= _CHANGE_IDS_MAX:
            _CHANGE_IDS.clear()
        cid = _CHANGE_IDS[key] = change_id(customer_id, policy, version, sequence, tier)
    return cid


#: (policy, tier) -> its validated RoutingHints. Policies are immutable (and few), hints are frozen models:
#: one per tier serves every record, and a model instance passes TierRecord validation as is (a dict would
#: be validated into a new model per record). Keyed by the policy object (identity: a reloaded file with
#: the same id and version is another key).
_ROUTING: Final[dict[tuple[CompiledPolicy, str], RoutingHints]] = {}
_ROUTING_MAX: Final = 4096


def _routing(policy: CompiledPolicy, tier: str) -> RoutingHints:
    """The routing hints of ``tier`` under ``policy`` (the hint fields of its ``routing`` entry)."""
    key = (policy, tier)
    hints = _ROUTING.get(key)
    if hints is None:
        hints = RoutingHints(**{k: v for k, v in policy.routing.get(tier, {}).items() if k in _ROUTING_FIELDS})
        if len(_ROUTING) >= _ROUTING_MAX:  # bounded: tests and tools may load many policy objects
            _ROUTING.clear()
        _ROUTING[key] = hints
    return hints


def read_records(state: CustomerState, policies: Sequence[CompiledPolicy], now: datetime) -> list[TierRecord]:
    """Every read-model record a stored state implies (for ``tierstream resync`` and snapshots): the same
    records the worker last wrote, with ``updated_at`` = ``now``."""
    revision = int((state.tiers.get(BOOKKEEPING) or {}).get("rev", 0))
    records = []
    for policy in policies:
        stored = state.tiers.get(policy.id)
        if stored and "lc" in stored:
            record = read_record(state.customer_id, policy, TierTrack.from_dict(stored["lc"]), stored.get("score"),
                                 revision, now)
            if record is not None:
                records.append(record)
    return records


_NOTICE_TYPES: Final[dict[str, type[BaseModel]]] = {
    m.__name__: m for m in (TierChangeProposed, ProposalClosed, TierAtRisk)
}


def _replayable(record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The stored re-emittable steps of a policy record, oldest first (a legacy single step is a dict)."""
    saved = record.get("re") if record else None
    if not saved:
        return []
    return [saved] if isinstance(saved, dict) else list(saved)
