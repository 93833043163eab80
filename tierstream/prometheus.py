"""A local Prometheus for the embedded stack: scrapes workers and the API, loads the repo's alert rules.

Used by the end-to-end test of the dashboard and alert PromQL (``tests/e2e``) and by ``tierstream demo``.
Nothing here is needed in production: there Prometheus is configured by ``deploy/prometheus`` (compose)
or the PodMonitors of ``deploy/k8s``.

- :func:`start_prometheus` writes a minimal config (1 s scrape and rule evaluation, the jobs
  ``tierstream-worker`` / ``tierstream-api`` the rules and dashboard depend on, the alert rules loaded),
  starts ``prometheus`` on a free loopback port with its TSDB in a work directory and waits for
  ``/-/ready``. It returns ``None`` when no ``prometheus`` binary is installed (``make prometheus``
  installs the Debian package). The caller stops the process with :func:`tierstream.embedded.stop_process`.
- :func:`query` runs an instant PromQL query through the HTTP API (urllib: no new dependency).
- :func:`maybe_start_for_demo` is the demo's best-effort wrapper: it never raises, it says what it did.

Only 127.0.0.1 is used: Prometheus listens there and scrapes targets there.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tierstream.embedded import free_port, stop_process

log = logging.getLogger("tierstream.prometheus")

#: The alert rules of the repo (absent when tierstream is installed from a wheel: then none are loaded).
ALERT_RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
#: Job names are a contract of deploy/prometheus/alerts.yml and the Grafana dashboard.
WORKER_JOB = "tierstream-worker"
API_JOB = "tierstream-api"
MISSING_BINARY = (
    "no `prometheus` binary on PATH: run `make prometheus` (deploy/scripts/ensure-prometheus.sh installs "
    "the Debian package prometheus) to get a local Prometheus"
)


class PrometheusError(RuntimeError):
    """Prometheus did not start, or answered a query with an error (the message says which)."""


def prometheus_binary() -> str | None:
    """Path of the ``prometheus`` server binary, or ``None`` when it is not installed."""
    return shutil.which("prometheus")


def write_config(
    targets: dict[str, list[str]], path: Path, rule_files: list[Path], interval: str = "1s"
) -> Path:
    """Write a Prometheus config scraping ``targets`` (job -> ``host:port`` list) to ``path``.

    Invariants: scrape and evaluation interval are both ``interval`` (1 s: a test sees series and rule
    results within seconds), the scrape timeout equals it (Prometheus refuses a timeout above the interval),
    rule file paths are absolute (Prometheus resolves relative ones against the config's directory), and
    the ``instance`` label stays the default ``host:port`` (several local workers differ only by port).
    """
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p.resolve()) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
            if hosts
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _get_json(url: str, timeout: float) -> Any:
    """GET ``url`` and decode its JSON body; an HTTP error still yields the body (Prometheus puts the
    error message there), a connection error raises ``OSError``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return json.loads(body)
        except ValueError:
            raise PrometheusError(f"GET {url}: HTTP {exc.code}: {body[:300]!r}") from exc


def wait_ready(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``{url}/-/ready`` answers 200 (TSDB opened, rules loaded); raise on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PrometheusError(f"prometheus exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:  # not listening yet, or 503 while starting (HTTPError is an OSError)
            pass
        time.sleep(0.1)
    raise PrometheusError(f"prometheus at {url} not ready after {timeout}s")


def start_prometheus(
    targets: dict[str, list[str]],
    workdir: Path,
    rule_files: list[Path] | None = None,
    timeout: float = 30.0,
) -> tuple[subprocess.Popen[bytes], str] | None:
    """Start a Prometheus scraping ``targets`` and return ``(process, base URL)``; ``None`` if not installed.

    Inputs: ``targets`` maps a job name (use :data:`WORKER_JOB` / :data:`API_JOB`) to ``host:port``
    strings; ``workdir`` holds ``prometheus.yml``, the TSDB (``data/``) and ``prometheus.log``;
    ``rule_files`` defaults to the repo's alert rules when they exist (pass ``[]`` for none).
    Output: the running process (own session, so :func:`tierstream.embedded.stop_process` stops it and
    nothing it spawned survives) and ``http://127.0.0.1:PORT``. It is ready (``/-/ready``) on return.
    Raises :class:`PrometheusError` when it does not become ready (the log is named in the message).
    """
    binary = prometheus_binary()
    if binary is None:
        log.warning(MISSING_BINARY)
        return None
    if rule_files is None:
        rule_files = [ALERT_RULES] if ALERT_RULES.exists() else []
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(targets, workdir / "prometheus.yml", rule_files)
    log_path = workdir / "prometheus.log"
    last_error: Exception | None = None
    # free_port() only says a port *was* free: another process may take it before Prometheus binds. A
    # Prometheus that exits early (bind failure) is retried on a fresh port, a few times at most.
    for _attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",  # a local, throw-away TSDB
            "--log.level=warn",
        ]
        with open(log_path, "ab") as logfile:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(url, timeout, proc)
            return proc, url
        except PrometheusError as exc:
            exited_early = proc.poll() is not None
            stop_process(proc)
            last_error = exc
            if not exited_early:
                break  # alive but never ready: retrying on another port would not help
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise PrometheusError(f"{last_error}; log {log_path}:\n{tail}")


def query(url: str, expr: str, at: float | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Evaluate ``expr`` at ``at`` (default: now) on the Prometheus at ``url``; return the samples.

    Output: a list of ``{"metric": {label: value}, "value": [timestamp, "string value"]}`` (an instant
    vector; a scalar result becomes one sample without labels, a string result raises). An empty list
    means no data. Raises :class:`PrometheusError` with Prometheus's message on a bad expression.
    """
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    body = _get_json(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout)
    if body.get("status") != "success":
        raise PrometheusError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] == "vector":
        return list(data["result"])
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    raise PrometheusError(f"{expr!r}: unexpected result type {data['resultType']} (want an instant vector)")


def active_targets(url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The active scrape targets (``scrapePool``/job, ``health``, ``lastError``, ``labels``) of ``url``."""
    body = _get_json(f"{url}/api/v1/targets?state=active", timeout)
    return list(body.get("data", {}).get("activeTargets", []))


def maybe_start_for_demo(
    worker_port: int, api_port: int | None, workdir: Path
) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Best effort for ``tierstream demo``: a Prometheus scraping the demo's worker (and API), if installed.

    Inputs: the worker's web port, the API's port (``None`` when the demo runs no API), a directory for
    config, TSDB and log. Output: ``(process or None, message to print)``. Never raises: a demo must run
    without Prometheus; the message then says why none was started. The caller stops the process with
    :func:`tierstream.embedded.stop_process`.
    """
    endpoints = f"metrics: worker http://127.0.0.1:{worker_port}/metrics"
    if api_port is not None:
        endpoints += f", API http://127.0.0.1:{api_port}/metrics"
    targets = {WORKER_JOB: [f"127.0.0.1:{worker_port}"]}
    if api_port is not None:
        targets[API_JOB] = [f"127.0.0.1:{api_port}"]
    try:
        started = start_prometheus(targets, workdir)
    except (PrometheusError, OSError) as exc:
        return None, f"{endpoints}\n  prometheus did not start: {exc}"
    if started is None:
        return None, f"{endpoints}\n  {MISSING_BINARY}"
    proc, url = started
    example = urllib.parse.urlencode({"g0.expr": "sum by (tier) (tierstream_customers_per_tier)", "g0.tab": "0"})
    rules = "alert rules loaded" if ALERT_RULES.exists() else "no alert rules (deploy/ not found)"
    if api_port is None and ALERT_RULES.exists():
        rules += "; TierstreamApiDown pends: no API runs"  # absent(up{job="tierstream-api"}) by design
    return proc, (
        f"{endpoints}\n  prometheus {url} (scrapes every 1s, {rules}; alerts: {url}/alerts)\n"
        f"  e.g. {url}/graph?{example}"
    )
