"""Benchmark of the customer state: bytes per customer, apply(), (de)serialization and feature reads.

Generates a synthetic population (tierstream.synth, 24 months, duplicates and late events included),
folds it in emission order with the stream's horizon rule, and reports, for the 365-day and 1095-day
horizons (events pre-validated, so this is the state cost alone):

- ``bytes``: serialized size per customer (p50 = the typical customer, p90, p99, max, share <= 2 KB);
- ``apply_us``: mean µs per event over the whole population, and ``apply_dense_us`` for the heaviest
  customer's events applied back to back (the worker's per-batch shape);
- ``to_bytes_us`` / ``from_bytes_us`` / ``roundtrip_us``: per customer, best of 3, p50 (typical) / p90 / mean;
- ``scorecard_features_us``: on a freshly loaded state, a ``features(now)`` view reading the features a
  scorecard reads (:data:`SCORECARD`), per customer; ``next_change_us`` likewise for ``next_change_at``;
  ``decision_us`` both in turn (what the stream does per decision).

Times: per-customer timings are best of 3 (wall clock, robust to preemption); the apply fold is CPU time
(``time.process_time``) so that a loaded machine inflates it less. Compare runs from the same session.

Writes ``bench/results/state.json``: the run is stored under ``runs[<label>]`` (other labels kept), so a
before/after pair measured on the same machine sits side by side (``ratios`` compares ``before`` with
``after`` when both exist).

    .venv/bin/python bench/bench_state.py [--customers 2000] [--seed 7] [--label after]
    # the pre-change implementation, importable as <pkg>.state / <pkg>.features from a path:
    .venv/bin/python bench/bench_state.py --label before --impl-path /tmp/old --impl-package oldscoring
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.events import EVENT_ADAPTER
from tierstream.synth import generate_events

END = datetime(2026, 7, 1, tzinfo=UTC)
#: What a typical scorecard reads (one evaluation of every policy reads at most these from one view).
SCORECARD = (
    "spend_lifetime", "spend_12m", "spend_36m", "orders_12m", "margin_12m", "active_days_90d",
    "years_as_customer", "product_lines_lifetime", "assess.growth_potential", "assess.strategic_value",
    "bad_debt", "days_since_last_activity", "avg_monthly_spend_6m",
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def us(seconds: float) -> float:
    return round(seconds * 1e6, 2)


def per_item(fn: Any, items: list, repeat: int = 3, setup: Any = None) -> list[float]:
    """Best-of-``repeat`` seconds of ``fn(setup(item))`` for every item (``setup`` untimed, e.g. a fresh load
    so that nothing cached by an earlier repetition is measured)."""
    best = [float("inf")] * len(items)
    clock = time.perf_counter
    for _ in range(repeat):
        for i, item in enumerate(items):
            if setup is not None:
                item = setup(item)
            t0 = clock()
            fn(item)
            dt = clock() - t0
            if dt < best[i]:
                best[i] = dt
    return best


def dist(seconds: list[float]) -> dict[str, float]:
    return {"p50": us(pct(seconds, 50)), "p90": us(pct(seconds, 90)), "mean": us(statistics.mean(seconds))}


def fold(state_cls: Any, events: list, horizon: timedelta) -> tuple[dict[str, Any], float]:
    """Apply every event (stream rule for horizon_start); returns the states and the CPU seconds spent
    (process time: other processes on a loaded machine do not count)."""
    states: dict[str, Any] = {}
    t0 = time.process_time()
    for e in events:
        s = states.get(e.customer_id)
        if s is None:
            s = states[e.customer_id] = state_cls.new(e.customer_id)
        s.apply(e, s.horizon_start(horizon, e.occurred_at))
    return states, time.process_time() - t0


def measure(state_cls: Any, events: list, days: int) -> dict[str, Any]:
    horizon = timedelta(days=days)
    states, secs = fold(state_cls, events, horizon)
    customers = list(states.values())
    blobs = [s.to_bytes() for s in customers]
    sizes = [len(b) for b in blobs]
    ser = per_item(lambda s: s.to_bytes(), customers)
    de = per_item(state_cls.from_bytes, blobs)
    rt = per_item(lambda b: state_cls.from_bytes(b).to_bytes(), blobs)

    def scorecard(s: Any) -> None:
        f = s.features(END)
        for name in SCORECARD:
            f[name]

    def decision(s: Any) -> None:  # the stream's per-decision reads: features, then the next due time
        scorecard(s)
        s.next_change_at(END)

    load = state_cls.from_bytes
    feat = per_item(scorecard, blobs, setup=load)
    nxt = per_item(lambda s: s.next_change_at(END), blobs, setup=load)
    dec = per_item(decision, blobs, setup=load)
    # dense: the heaviest customer's events back to back (what one worker batch does to one state)
    heavy = max(states, key=lambda c: states[c].version)
    own = [e for e in events if e.customer_id == heavy]
    dense = float("inf")
    for _ in range(3):
        _, t = fold(state_cls, own, horizon)
        dense = min(dense, t)
    return {
        "bytes": {"p50": pct(sizes, 50), "p90": pct(sizes, 90), "p99": pct(sizes, 99), "max": max(sizes),
                  "mean": round(statistics.mean(sizes)),
                  "share_le_2kb": round(sum(x <= 2048 for x in sizes) / len(sizes), 3)},
        "apply_us": round(secs / len(events) * 1e6, 2),
        "apply_dense_us": round(dense / len(own) * 1e6, 2),
        "to_bytes_us": dist(ser),
        "from_bytes_us": dist(de),
        "roundtrip_us": dist(rt),
        "scorecard_features_us": dist(feat),
        "next_change_us": dist(nxt),
        "decision_us": dist(dec),
    }


def ratios(before: dict, after: dict) -> dict[str, Any]:
    """``before / after`` for times (speed-up) and sizes (shrink factor), per horizon."""
    out: dict[str, Any] = {}
    for days, b in before.get("horizons", {}).items():
        a = after.get("horizons", {}).get(days)
        if not a:
            continue
        r: dict[str, Any] = {"apply_us": round(b["apply_us"] / a["apply_us"], 2),
                             "apply_dense_us": round(b["apply_dense_us"] / a["apply_dense_us"], 2),
                             "bytes_p50": round(b["bytes"]["p50"] / a["bytes"]["p50"], 3)}
        for key in ("to_bytes_us", "from_bytes_us", "roundtrip_us", "scorecard_features_us", "next_change_us",
                    "decision_us"):
            r[f"{key}_p50"] = round(b[key]["p50"] / a[key]["p50"], 2)
        out[days] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--label", default="after", help="name of this run in the results file")
    ap.add_argument("--impl-path", default=None, help="sys.path entry holding another implementation")
    ap.add_argument("--impl-package", default="scoring", help="package providing .state (CustomerState)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "state.json"))
    args = ap.parse_args()
    if args.impl_path:
        sys.path.insert(0, args.impl_path)
    state_cls = importlib.import_module(f"{args.impl_package}.state").CustomerState
    raw = generate_events(args.customers, args.seed, end=END)
    events = [EVENT_ADAPTER.validate_python(e) for e in raw]
    per_customer: dict[str, int] = {}
    for e in events:
        per_customer[e.customer_id] = per_customer.get(e.customer_id, 0) + 1
    run: dict[str, Any] = {
        "customers": args.customers, "seed": args.seed, "events": len(events),
        "events_per_customer": {"p50": pct(list(per_customer.values()), 50), "max": max(per_customer.values())},
        "python": platform.python_version(), "implementation": args.impl_package,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "horizons": {},
    }
    for days in (365, 1095):
        run["horizons"][str(days)] = measure(state_cls, events, days)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(out.read_text())
    except (OSError, ValueError):
        results = {}
    if "runs" not in results:
        results = {"runs": {}}  # earlier single-run layout: replaced
    results["runs"][args.label] = run
    if "before" in results["runs"] and "after" in results["runs"]:
        results["ratios_before_over_after"] = ratios(results["runs"]["before"], results["runs"]["after"])
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({args.label: run, **({"ratios": results["ratios_before_over_after"]}
                                          if "ratios_before_over_after" in results else {})}, indent=2))


if __name__ == "__main__":
    main()
