"""tierstream.prometheus on its own (no broker, no worker): config, start/stop, queries, the demo wrapper.

Needs the ``prometheus`` and ``promtool`` binaries (``make prometheus``); fails, never skips, without them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

import tierstream.prometheus as tp
from tierstream.embedded import stop_process


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: run `make prometheus` (deploy/scripts/ensure-prometheus.sh), then re-run.")
    return path


def test_written_config_is_valid_and_loads_the_alert_rules(tmp_path: Path) -> None:
    """promtool accepts the generated config, with the repo's rules, for both job names."""
    promtool = _require("promtool")
    config = tp.write_config(
        {tp.WORKER_JOB: ["127.0.0.1:1", "127.0.0.1:2"], tp.API_JOB: ["127.0.0.1:3"]},
        tmp_path / "prometheus.yml",
        [tp.ALERT_RULES],
    )
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_start_query_and_stop(tmp_path: Path) -> None:
    """Prometheus is ready on return, loads the alert rules, scrapes the targets, and stops cleanly."""
    _require("prometheus")
    started = tp.start_prometheus({tp.WORKER_JOB: ["127.0.0.1:1"]}, tmp_path)  # nothing listens on port 1
    assert started is not None
    proc, url = started
    try:
        assert url.startswith("http://127.0.0.1:")
        assert tp.query(url, "vector(1)")[0]["value"][1] == "1"
        with pytest.raises(tp.PrometheusError, match="parse error"):
            tp.query(url, "sum(")
        # The target is scraped after Prometheus's first discovery round (about 5 s): down, so up == 0;
        # the repo's rules are evaluated (TierstreamWorkerDown pending: absent(up) before, up == 0 after).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not tp.query(url, 'up{job="tierstream-worker"}'):
            time.sleep(0.3)
        assert tp.query(url, 'up{job="tierstream-worker"}')[0]["value"][1] == "0"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not tp.query(url, 'ALERTS{alertname="TierstreamWorkerDown"}'):
            time.sleep(0.3)
        assert tp.query(url, 'ALERTS{alertname="TierstreamWorkerDown"}')
        assert [t["health"] for t in tp.active_targets(url)] == ["down"]
    finally:
        stop_process(proc)
    assert proc.returncode is not None


def test_absent_binary_returns_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the binary: start_prometheus returns None, the demo wrapper says why and how to fix it."""
    monkeypatch.setattr(tp, "prometheus_binary", lambda: None)
    assert tp.start_prometheus({tp.WORKER_JOB: ["127.0.0.1:1"]}, tmp_path) is None
    proc, message = tp.maybe_start_for_demo(6066, None, tmp_path)
    assert proc is None
    assert "http://127.0.0.1:6066/metrics" in message and "make prometheus" in message


def test_demo_wrapper_starts_one(tmp_path: Path) -> None:
    """With the binary: a running Prometheus and a message naming both metrics endpoints and its URL."""
    _require("prometheus")
    proc, message = tp.maybe_start_for_demo(6066, 8080, tmp_path)
    assert proc is not None
    try:
        assert proc.poll() is None
        assert "http://127.0.0.1:6066/metrics" in message and "http://127.0.0.1:8080/metrics" in message
        assert "prometheus http://127.0.0.1:" in message
    finally:
        stop_process(proc)
