"""Continuous features a policy only *compares* with constants: what of their value its decision can see.

A ``days_since_*`` feature changes with every evaluation time, so a decision keyed by the raw value never
repeats. But when every use of such a feature in a policy is a comparison with a constant number (a
condition ``{feature: f, op: ">", value: 180}`` or an ``in`` list of numbers, or the bounds of a points
ladder), two values that fall on the same side of, or on, each of those numbers are indistinguishable to
the policy: every comparison, hence every ladder's points, every condition, the score, the tier, the
outlook and the keep margin are the same. ``streams.decide`` keys such a feature by its position among
the numbers (:func:`position`) instead of its value, so a decision that only moved the clock can be
elided for these policies too.

The proof is syntactic and conservative: a continuous feature qualifies only if *every* place the policy
names it is one of

- a comparison node (``op``) whose ``value`` is a number, a list of numbers, or ``null`` with ``==`` /
  ``!=`` (a presence test: the key keeps None apart);
- a scorecard indicator scored on a ``ladder`` (not a linear ``scale``);
- a blend part's ``ladder`` (``steps`` of ``points``).

Anything else (a linear scale, the raw value as the score, bands or entitlements ``of`` it, a grant, a
comparison with a string) disqualifies the feature, and its raw value stays in the key: correct, only
never elided. Pure; run once per policy at compile time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from scoring.timers import CONTINUOUS_PREFIX  # the features whose value changes with the evaluation time

Threshold = Decimal | int | float
_BOUNDS: Final = ("ge", "gt", "le", "lt")


def _number(value: Any) -> bool:
    return isinstance(value, Decimal | int | float) and not isinstance(value, bool)


def _steps(steps: Any, found: set[Threshold]) -> bool:
    """Collect the bounds of a points ladder; False unless every step is a numeric points step."""
    if not isinstance(steps, list) or not steps:
        return False
    for step in steps:
        if not isinstance(step, Mapping) or "points" not in step:
            return False
        for key in _BOUNDS:
            bound = step.get(key)
            if bound is not None:
                if not _number(bound):
                    return False
                found.add(bound)
    return True


def _use(node: Mapping[str, Any], found: set[Threshold]) -> bool:
    """Whether ``node`` (which names the feature under ``feature``) only compares it with constants;
    collects those constants into ``found``."""
    if "op" in node:
        value = node.get("value")
        if value is None:
            return node["op"] in ("==", "!=")
        values = value if isinstance(value, list) else [value]
        if not values or not all(_number(v) for v in values):
            return False
        found.update(values)
        return True
    if "ladder" in node and node.get("scale") is None:
        return _steps(node["ladder"], found)
    if "steps" in node and set(node) <= {"feature", "steps"}:
        return _steps(node["steps"], found)
    return False


def compared_only(document: Any, used: Iterable[str]) -> dict[str, tuple[Threshold, ...]]:
    """Continuous features of ``used`` that ``document`` only compares with constants -> those constants.

    Inputs: the policy as plain data (``Policy.model_dump(by_alias=True, exclude_none=True)``: every
    node the file can hold) and the features it reads. Output: feature -> its sorted distinct comparison
    numbers, for the qualifying features only (see the module docstring); a feature named anywhere else
    is left out. Deterministic."""
    wanted = {name for name in used if name.startswith(CONTINUOUS_PREFIX)}
    found: dict[str, set[Threshold]] = {name: set() for name in wanted}
    bad: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(value, str) and value in wanted:
                    if key != "feature" or not _use(node, found[value]):
                        bad.add(value)
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node in wanted:
            bad.add(node)  # named as a bare list item: not a comparison we understand

    walk(document)
    return {name: tuple(sorted(found[name])) for name in sorted(wanted - bad) if found[name]}


def position(value: Any, thresholds: tuple[Threshold, ...]) -> tuple[str, int, int] | None:
    """What a policy comparing a value only with ``thresholds`` can see of it: None for None, else how many
    thresholds are below it and how many are at most it (equal positions = the same outcome of every
    ``<``, ``<=``, ``==``, ``!=``, ``>=``, ``>`` and ``in`` against each threshold)."""
    if value is None:
        return None
    below = at_most = 0
    for t in thresholds:  # a handful of numbers: a loop beats bisect's call overhead on mixed types
        if t < value:
            below += 1
            at_most += 1
        elif t == value:
            at_most += 1
        else:
            break
    return ("~", below, at_most)
