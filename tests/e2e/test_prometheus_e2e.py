"""End to end (issue 7): a real Prometheus scrapes a running worker and API while a stream flows, and every
PromQL expression of the Grafana dashboard and of the alert rules is evaluated against it.

Setup: the embedded stack (broker + Redis), one worker (``make_worker``), the API as a subprocess reading
the worker's Redis prefix, and a Prometheus (``tierstream.prometheus``) scraping both every second with
``deploy/prometheus/alerts.yml`` loaded. A background driver streams synthetic events (a share of them
invalid, plus broken JSON, so dead letters flow) and calls the API (200, 401 and 404 answers) during the
whole check, so rate windows are never empty.

What must hold:

- every dashboard query (variables substituted: ``$policy`` and ``$instance`` with the values its own
  template queries return, ``$__rate_interval`` etc. with durations that suit a 1 s scrape) returns at
  least one finite sample, except the panels of :data:`EXPECTED_EMPTY_PANELS` (metrics not produced yet);
- every alert expression returns data (it would fire: e.g. the dead-letter rate, which the driver makes
  high on purpose), except those of :data:`QUIET_ALERTS`: for each, the reason, the sub-expressions
  without their threshold (which must return data, proving the series exist), and whether the alert
  itself must be empty here (false for load-dependent ones that a slow machine may trip);
- :data:`NOT_PRODUCED_YET` metrics are still absent: when one appears, the test fails so that its panel
  and alert are moved into the checked set (a ratchet, not a silent pass).

Requires the ``prometheus`` binary (``make prometheus``): the test fails, not skips, without it, like
tests/deploy do for promtool.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from scoring import accel
from streams.topics import Topics
from tierstream.embedded import free_port, stop_process, wait_for_port
from tierstream.kafka_io import ensure_topics, producer
from tierstream.prometheus import API_JOB, WORKER_JOB, prometheus_binary, query, start_prometheus
from tierstream.synth import generate_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-read-token"

#: Grafana's built-in variables, replaced by durations that suit a 1 s scrape interval: Grafana's own
#: $__rate_interval is max(4 x scrape interval, $__interval + scrape interval); 15s leaves room for a
#: late scrape. $__range covers the whole test (the series are younger than that).
#: Seconds of stream before the first verdict; data checks are then retried for up to RETRY_SECONDS.
STREAM_SECONDS = 20.0
RETRY_SECONDS = 25.0

GRAFANA_DURATIONS: dict[str, str] = {"$__rate_interval": "15s", "$__interval": "5s", "$__range": "5m"}

#: Metrics the dashboard and rules use that the worker does not set yet: metric -> reason.
NOT_PRODUCED_YET: dict[str, str] = {}

#: Dashboard queries allowed to return nothing: (panel title, refId) -> reason. Each must still be empty.
EXPECTED_EMPTY_PANELS: dict[tuple[str, str], str] = {
    ("Shadow policies: differences from live", "A"): "no shadow policy is configured in this test",
    ("Shadow policies: differences from live", "B"): "no shadow policy is configured in this test",
}


@dataclass(frozen=True)
class Quiet:
    """An alert expected not to fire in this test.

    ``underlying``: sub-expressions of the alert's expr without their threshold (each must be a literal
    part of the expr, checked below, so they cannot drift from the rule); each must return data, proving
    the alert watches series that exist. ``must_be_empty``: the alert expr itself must return nothing
    (false where the outcome depends on the machine's speed, e.g. latency and lag thresholds).
    """

    reason: str
    underlying: tuple[str, ...]
    must_be_empty: bool = True


_API_ROUTES = 'route!~"/metrics|/healthz|/readyz"'
QUIET_ALERTS: dict[str, Quiet] = {
    "TierstreamWorkerDown": Quiet("the worker is up and scraped", ('up{job="tierstream-worker"}',)),
    "TierstreamWorkerUnhealthy": Quiet("the worker's processing loop is alive", ("tierstream_worker_healthy",)),
    "TierstreamWorkerNotReady": Quiet("the worker has its partitions and is ready", ("tierstream_worker_ready",)),
    # quiet only where the compiled build is in use (make test builds it; a machine without a C compiler runs
    # the source, and the expression then returns the worker's 0)
    "TierstreamWorkerNotCompiled": Quiet("the worker runs the compiled hot path", ("tierstream_compiled_core",),
                                         must_be_empty=accel.status().compiled),
    "TierstreamConsumerLagGrowing": Quiet(
        "the worker keeps up (lag far below 1000); a slow machine may lag, so quiet is not asserted",
        (
            "max by (topic, partition) (tierstream_consumer_lag_records)",
            "max by (topic, partition) (deriv(tierstream_consumer_lag_records[15m]))",
        ),
        must_be_empty=False,
    ),
    "TierstreamNoEvents": Quiet("events are flowing", ("time() - max(tierstream_last_event_timestamp_seconds)",)),
    "TierstreamRedisWriteFailures": Quiet(
        "Redis is up: no write batch fails", ("sum(increase(tierstream_redis_write_failures_total[5m]))",)
    ),
    "TierstreamRedisWritesBacklog": Quiet(
        "Redis is up: nothing is buffered", ("max by (instance) (tierstream_redis_pending_writes)",)
    ),
    "TierstreamEmitLatencyHigh": Quiet(
        "p99 arrival-to-emit stays under 2.5s on an unloaded machine; load dependent, so quiet is not asserted",
        ("histogram_quantile(0.99, sum by (le) (rate(tierstream_arrival_to_emit_seconds_bucket[5m])))",),
        must_be_empty=False,
    ),
    "TierstreamRebalanceStorm": Quiet(
        "one worker, one partition assignment", ("max(increase(tierstream_rebalances_total[30m]))",)
    ),
    "TierstreamApprovalsPilingUp": Quiet(
        "no proposal stays open for long in a 30 s stream", ("sum by (policy) (tierstream_pending_approvals)",)
    ),
    "TierstreamRolloutRefused": Quiet(
        "the worker runs the policy version it has always run",
        ("max by (policy, version) (tierstream_rollout_blocked)",),
    ),
    "TierstreamInputRecordsSkipped": Quiet(
        "one worker, no rebalance mid-stream: nothing is skipped",
        (
            "sum(increase(tierstream_input_reseeks_total[1h]))",
            "sum(increase(tierstream_input_gaps_accepted_total[1h]))",
            "sum(increase(tierstream_input_stalls_total[1h]))",
        ),
    ),
    "TierstreamApiDown": Quiet("the API is up and scraped", ('up{job="tierstream-api"}',)),
    "TierstreamApiErrorRatioHigh": Quiet(
        "the API answers no 5xx (asserted from the driver's side too)",
        (f"sum(rate(tierstream_api_requests_total{{{_API_ROUTES}}}[5m]))",),
    ),
    "TierstreamApiLatencyHigh": Quiet(
        "p99 API latency stays under 500ms on an unloaded machine; load dependent, so quiet is not asserted",
        (f"histogram_quantile(0.99, sum by (le) (rate(tierstream_api_request_seconds_bucket{{{_API_ROUTES}}}[5m])))",),
        must_be_empty=False,
    ),
    "TierstreamReadModelStale": Quiet(
        "the worker writes the read model continuously",
        (
            "time() - max(tierstream_readmodel_last_write_timestamp_seconds)",
            'sum(rate(tierstream_events_consumed_total{outcome="applied"}[10m]))',
        ),
    ),
}


def _load_checks() -> ModuleType:
    """deploy/scripts/check_deploy_files.py (the same panel and rule lists the static checks use)."""
    if "check_deploy_files" in sys.modules:
        return sys.modules["check_deploy_files"]
    path = REPO / "deploy" / "scripts" / "check_deploy_files.py"
    spec = importlib.util.spec_from_file_location("check_deploy_files", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


checks = _load_checks()


def _squash(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def has_finite_sample(samples: list[dict[str, Any]]) -> bool:
    """True when at least one sample is a number (NaN, e.g. 0/0 or a quantile of nothing, is no data)."""
    return any(math.isfinite(float(s["value"][1])) for s in samples)


# --------------------------------------------------------------------------------------------- the driver
class Driver(threading.Thread):
    """Streams events to the worker's input topics and calls the API until stopped.

    Every tick (0.1 s): ``events_per_tick`` synthetic events (their own invalid share included), one
    record of broken JSON every other tick (a steady dead-letter rate: 5/s), and one API call cycling
    through authorized lookups, batch gets, counts, an unknown customer (404), a missing token (401)
    and an unknown path (404). Statuses are counted in ``statuses``; an exception stops the thread and
    is kept in ``error`` (the test asserts there is none).
    """

    def __init__(self, broker_url: str, topics: Topics, api_url: str, events: list[dict[str, Any]],
                 events_per_tick: int) -> None:
        super().__init__(daemon=True, name="e2e-driver")
        self.broker_url, self.topics, self.api_url = broker_url, topics, api_url
        self.events, self.events_per_tick = events, events_per_tick
        self.stop_flag = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.sent = 0
        self.customers: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def _run(self) -> None:
        prod = producer(self.broker_url)
        calls = itertools.cycle(self._calls())
        source = iter(self.events)
        try:
            for tick in itertools.count():
                if self.stop_flag.is_set():
                    break
                started = time.monotonic()
                for event in itertools.islice(source, self.events_per_tick):
                    self._send(prod, event)
                if tick % 2 == 0:
                    prod.send(self.topics.input("order"), key=b"e2e-broken", value=b'{"event_id": "x", broken')
                prod.flush()
                next(calls)()
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
        finally:
            prod.close(timeout=5)

    def _send(self, prod: Any, event: dict[str, Any]) -> None:
        kind = event.get("type")
        # invalid events may carry an unknown type: the order topic gets them (the worker dead-letters them)
        topic = self.topics.input(kind) if kind in self.topics.inputs else self.topics.input("order")
        customer = event.get("customer_id")
        prod.send(topic, key=str(customer).encode() if customer else None, value=orjson.dumps(event))
        if isinstance(customer, str) and customer not in self.customers[-50:]:
            self.customers.append(customer)
        self.sent += 1

    def _customer(self) -> str:
        return self.customers[-1] if self.customers else "c000000"

    def _calls(self) -> list[Any]:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        return [
            lambda: self._http("GET", f"/v1/customers/{self._customer()}/tier", auth),
            lambda: self._http("GET", "/v1/customers/no-such-customer/tier", auth),  # 404
            lambda: self._http("POST", "/v1/tiers:batchGet", auth, {"ids": self.customers[-20:] or ["x"]}),
            lambda: self._http("GET", f"/v1/customers/{self._customer()}/tier", {}),  # 401
            lambda: self._http("GET", "/v1/policies/five_tier/counts", auth),
            lambda: self._http("GET", "/no-such-route", auth),  # 404, route "unmatched"
        ]

    def _http(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> None:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers={
            **headers, **({"Content-Type": "application/json"} if data else {})})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                self.statuses[resp.status] += 1
        except urllib.error.HTTPError as exc:
            self.statuses[exc.code] += 1


# ------------------------------------------------------------------------------------------- fixtures
@dataclass
class Running:
    """What the test talks to: Prometheus, the worker's and API's instance labels, the driver."""

    prom_url: str
    worker_instance: str
    api_instance: str
    driver: Driver
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _require_prometheus() -> None:
    if prometheus_binary() is None:
        pytest.fail("prometheus not found: run `make prometheus` (deploy/scripts/ensure-prometheus.sh), then re-run.")


def _start_api(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``tierstream api`` on 127.0.0.1:port, own session (stop_process kills its group)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tierstream", "api", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture
def running(stack, make_worker, tmp_path: Path) -> Iterator[Running]:
    """Worker, API, Prometheus and a flowing stream; everything is stopped afterwards, also on failure."""
    _require_prometheus()
    worker = make_worker()
    ensure_topics(stack.broker_url, [*worker.topics.all_consumed(), *worker.topics.all_produced()], 4)
    procs: list[subprocess.Popen[bytes]] = []
    driver: Driver | None = None
    try:
        worker.start()  # make_worker stops it too; stopping it here as well is harmless (idempotent)
        api_port = free_port()
        api_env = {
            "REDIS_URL": worker.env["REDIS_URL"],
            "TIERSTREAM_REDIS_PREFIX": worker.env["TIERSTREAM_REDIS_PREFIX"],
            "TIERSTREAM_API_READ_TOKENS": TOKEN,
            "TIERSTREAM_LOG_LEVEL": "warning",
        }
        api = _start_api(api_env, api_port, tmp_path / "api.log")
        procs.append(api)
        wait_for_port(api_port, 30, api)
        worker_instance, api_instance = f"127.0.0.1:{worker.web_port}", f"127.0.0.1:{api_port}"
        started = start_prometheus({WORKER_JOB: [worker_instance], API_JOB: [api_instance]}, tmp_path / "prometheus")
        assert started is not None  # the binary was checked above
        prom, prom_url = started
        procs.append(prom)

        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        events = generate_events(80, seed=11, start=end - timedelta(days=730), end=end, invalid=0.02)
        driver = Driver(stack.broker_url, worker.topics, f"http://127.0.0.1:{api_port}", events, events_per_tick=15)
        driver.start()
        yield Running(prom_url, worker_instance, api_instance, driver, procs)
    finally:
        if driver is not None:
            driver.stop_flag.set()
            driver.join(10)
        for proc in reversed(procs):
            stop_process(proc)
        worker.stop()


# ----------------------------------------------------------------------------------------------- checks
@dataclass
class Check:
    """One PromQL expression and what it must return: ``"data"`` (a finite sample) or ``"empty"``."""

    what: str
    expr: str
    want: str
    why: str = ""


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def grafana_regex_escape(value: str) -> str:
    """A value as Grafana puts it into ``=~"..."``: regex-escaped, backslashes doubled for the PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


def _variable_values(prom_url: str) -> dict[str, str]:
    """Resolve the dashboard's query variables as Grafana would (label_values), joined as a regex."""
    values: dict[str, str] = {}
    for var in checks.dashboard().get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        raw = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", raw.strip())
        assert match, f"variable {var['name']}: unsupported query {raw!r}"
        selector, label = match.groups()
        found = sorted({s["metric"][label] for s in query(prom_url, f"group by ({label}) ({selector})")
                        if label in s["metric"]})
        if found:
            values[f"${var['name']}"] = "|".join(grafana_regex_escape(v) for v in found)
    return values


def _substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**GRAFANA_DURATIONS, **variables}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}: add it to the test"
    return expr


def build_checks(variables: dict[str, str]) -> list[Check]:
    """Every dashboard query and alert expression, with what it must return here."""
    result: list[Check] = []
    targets = checks.dashboard_targets()
    unknown = set(EXPECTED_EMPTY_PANELS) - {(title, ref) for title, ref, _ in targets}
    assert not unknown, f"EXPECTED_EMPTY_PANELS names panels the dashboard no longer has: {unknown}"
    repeats: Counter[tuple[str, str]] = Counter()
    for title, ref, expr in targets:
        reason = EXPECTED_EMPTY_PANELS.get((title, ref))
        repeats[(title, ref)] += 1  # two panels may share a title (a stat and a graph of one series)
        nth = f" #{repeats[(title, ref)]}" if repeats[(title, ref)] > 1 else ""
        result.append(Check(f"panel {title!r} / {ref}{nth}", _substitute(expr, variables),
                            "empty" if reason else "data", reason or ""))
    rules = checks.alert_rules()
    unknown_alerts = set(QUIET_ALERTS) - {rule["alert"] for rule in rules}
    assert not unknown_alerts, f"QUIET_ALERTS names alerts alerts.yml no longer has: {unknown_alerts}"
    for rule in rules:
        name, expr = rule["alert"], rule["expr"].strip()
        quiet = QUIET_ALERTS.get(name)
        if quiet is None:
            result.append(Check(f"alert {name}", expr, "data"))
            continue
        if quiet.must_be_empty:
            result.append(Check(f"alert {name} (quiet)", expr, "empty", quiet.reason))
        for i, part in enumerate(quiet.underlying, 1):
            assert _squash(part) in _squash(expr), f"{name}: {part!r} is not part of its expr; update QUIET_ALERTS"
            result.append(Check(f"alert {name}, series under it ({i}/{len(quiet.underlying)})", part, "data",
                                quiet.reason))
    for metric, reason in NOT_PRODUCED_YET.items():
        result.append(Check(f"metric {metric} not produced yet", metric, "empty", reason))
    return result


def _failure(check: Check, samples: list[dict[str, Any]]) -> str | None:
    if check.want == "data" and not has_finite_sample(samples):
        return f"{check.what}: no data{' (only NaN)' if samples else ''}\n    {check.expr}"
    if check.want == "empty" and samples:
        hint = ("now produced: move its panels/alerts out of the expected-empty lists"
                if check.what.startswith(("metric", "panel")) else "fires although expected quiet")
        return f"{check.what}: {hint} ({check.why})\n    {check.expr}\n    -> {samples[:3]}"
    return None


# ------------------------------------------------------------------------------------------------- test
def test_every_dashboard_query_and_alert_returns_data(running: Running) -> None:
    """While the stream flows, each dashboard query and alert expression answers as the lists say."""
    prom, driver = running.prom_url, running.driver
    started = time.monotonic()

    def targets_up() -> bool:
        ups = {s["metric"]["job"]: s["value"][1] for s in query(prom, "up")}
        return ups.get(WORKER_JOB) == "1" and ups.get(API_JOB) == "1"

    _wait(targets_up, 20, "both scrape targets up")
    _wait(lambda: query(prom, "sum(tierstream_events_consumed_total)"), 30, "events consumed, as seen by Prometheus")
    # Counters need two scrapes after their first increase, the worker exports its gauges every 5s, and
    # quiet alerts are only meaningful after a sustained stream: no verdict before STREAM_SECONDS of it.
    time.sleep(max(0.0, STREAM_SECONDS - (time.monotonic() - started)))
    variables = _wait(lambda: (v := _variable_values(prom)) and {"$policy", "$instance"} <= set(v) and v,
                      20, "the dashboard variables $policy and $instance to have values")
    assert variables["$instance"] == grafana_regex_escape(running.worker_instance)

    all_checks = build_checks(variables)
    assert len({c.what for c in all_checks}) == len(all_checks), "check labels must be unique (results keyed by them)"
    pending = [c for c in all_checks if c.want == "data"]
    deadline = time.monotonic() + RETRY_SECONDS
    last: dict[str, str] = {}
    seen: dict[str, list[dict[str, Any]]] = {}
    while pending and time.monotonic() < deadline:
        assert driver.is_alive(), f"the driver stopped: {driver.error!r}"
        still = []
        for check in pending:
            seen[check.what] = samples = query(prom, check.expr)
            problem = _failure(check, samples)
            if problem:
                still.append(check)
                last[check.what] = problem
        pending = still
        if pending:
            time.sleep(1)
    failures = [last[c.what] for c in pending]
    # Quiet checks once, at the end, still with the stream flowing (a quiet alert must stay quiet under load).
    for check in (c for c in all_checks if c.want == "empty"):
        seen[check.what] = samples = query(prom, check.expr)
        if problem := _failure(check, samples):
            failures.append(problem)
    print(f"after {time.monotonic() - started:.0f}s of stream, {driver.sent} events sent:")  # shown on failure
    for check in all_checks:
        values = [s["value"][1] for s in seen.get(check.what, [])]
        print(f"  {check.want:<5} {check.what}: {len(values)} samples {values[:4]}")

    assert driver.error is None, f"driver failed: {driver.error!r}"
    assert driver.is_alive(), "the driver ran out of events before the checks finished"
    statuses = dict(driver.statuses)
    assert {200, 401, 404} <= set(statuses), f"API statuses seen: {statuses}"
    assert not [s for s in statuses if s >= 500], f"API answered 5xx: {statuses}"
    assert not failures, (
        f"{len(failures)} of {len(all_checks)} PromQL checks failed (stream sent {driver.sent} events, "
        f"API statuses {statuses}):\n  " + "\n  ".join(failures)
    )
