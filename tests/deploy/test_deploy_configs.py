"""Tests of deploy/ (issue 7): Prometheus config, alert rules and their unit tests, dashboard, compose, k8s.

promtool (Debian package ``prometheus``) is required: when it is missing these tests FAIL and say to run
``make prometheus``; they never skip. The static checks live in deploy/scripts/check_deploy_files.py,
shared with deploy/scripts/check-deploy.sh.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
SCRIPTS = REPO / "deploy" / "scripts"


def _load_checks() -> ModuleType:
    """Import deploy/scripts/check_deploy_files.py (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("check_deploy_files", SCRIPTS / "check_deploy_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


checks = _load_checks()


def require_promtool() -> str:
    """Path of promtool; fails the calling test (never skips) when it is not installed."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: run `make prometheus` (deploy/scripts/ensure-prometheus.sh installs the "
            "Debian package prometheus), then re-run the tests."
        )
    return path


def _run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output as text."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# ------------------------------------------------------------------------------------------- promtool
def test_promtool_check_config() -> None:
    """The compose Prometheus config (and the rule file it loads) is valid."""
    promtool = require_promtool()
    result = _run([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    """The alert rules are valid."""
    promtool = require_promtool()
    result = _run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(checks.alert_rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    """The unit tests of every alert (firing and not firing) pass."""
    promtool = require_promtool()
    result = _run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every Grafana panel query parses (Grafana variables substituted)."""
    promtool = require_promtool()
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text(checks.dashboard_rules_yaml(), encoding="utf-8")
    result = _run([promtool, "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------------- metric-name drift
def test_promql_metric_name_extraction() -> None:
    """The extractor finds metric names and ignores functions, labels, groupings, keywords and numbers."""
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(foo_bucket{route!~"/metrics|x"}[$__rate_interval])))'
        ' > 1e3 and on () time() - max(bar) > 600 or absent(up{job="a"})'
    )
    assert checks.promql_metric_names(expr) == {"foo_bucket", "bar", "up"}


def test_alert_and_dashboard_metrics_exist() -> None:
    """Drift check: every metric in the alert rules and the dashboard is defined (worker, API or standard)."""
    exprs = (
        checks.alert_exprs() + [expr for _, _, expr in checks.dashboard_targets()] + checks.dashboard_variable_queries()
    )
    unknown = checks.unknown_metric_names(exprs, checks.known_series())
    assert not unknown, f"metric names not in streams/metrics.py, the API contract or standard series: {unknown}"


def test_drift_check_catches_a_renamed_metric() -> None:
    """A name not defined anywhere is reported (the check is not vacuous)."""
    unknown = checks.unknown_metric_names(["rate(tierstream_events_total[5m])"], checks.known_series())
    assert set(unknown) == {"tierstream_events_total"}


def test_every_worker_metric_is_on_the_dashboard() -> None:
    """Each metric of streams/metrics.py has at least one panel (issue 7 lists them all)."""
    used = {name for _, _, expr in checks.dashboard_targets() for name in checks.promql_metric_names(expr)}
    missing = [name for name, kind in checks.worker_metrics().items() if not checks.series_of(name, kind) & used]
    assert not missing, f"worker metrics without a dashboard panel: {missing}"


def test_api_metric_contract_matches_the_api_module() -> None:
    """The API metric names the rules use are the ones tierstream/api/metrics.py defines."""
    source = REPO / "tierstream" / "api" / "metrics.py"
    if not source.exists():
        pytest.skip("tierstream/api/metrics.py not present in this tree")
    defined = checks.worker_metrics(source)
    assert {name: defined.get(name) for name in checks.API_METRICS} == checks.API_METRICS


# ----------------------------------------------------------------------------------------- alert rules
ALERT_RULES = checks.alert_rules()


@pytest.mark.parametrize("rule", ALERT_RULES, ids=[rule["alert"] for rule in ALERT_RULES])
def test_alert_has_runbook_section(rule: dict[str, object]) -> None:
    """runbook_url is docs/runbook.md#<anchor> and the runbook has that heading."""
    url = rule["annotations"]["runbook_url"]  # type: ignore[index]
    match = re.fullmatch(r"docs/runbook\.md#([\w-]+)", url)
    assert match, f"{rule['alert']}: runbook_url {url!r} is not docs/runbook.md#<anchor>"
    assert match.group(1) in checks.runbook_anchors(), f"docs/runbook.md has no section #{match.group(1)}"
    assert match.group(1) == str(rule["alert"]).lower()


def test_alert_rules_structure() -> None:
    """Every alert has for:, a known severity, summary, description and runbook_url."""
    names = checks.check_alert_rules()
    assert len(names) >= 8


def test_issue_alerts_present() -> None:
    """The alerts issue 7 asks for exist."""
    names = {rule["alert"] for rule in ALERT_RULES}
    wanted = {
        "TierstreamConsumerLagGrowing",
        "TierstreamDeadLetterRateHigh",
        "TierstreamNoEvents",
        "TierstreamApiErrorRatioHigh",
        "TierstreamRedisWriteFailures",
        "TierstreamReadModelStale",
        "TierstreamWorkerDown",
        "TierstreamApprovalsPilingUp",
    }
    assert wanted <= names, wanted - names


def test_worker_down_covers_absent_targets() -> None:
    """Worker down is `up == 0` or no worker target at all."""
    rule = next(rule for rule in ALERT_RULES if rule["alert"] == "TierstreamWorkerDown")
    assert 'up{job="tierstream-worker"} == 0' in rule["expr"]
    assert 'absent(up{job="tierstream-worker"})' in rule["expr"]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    """alerts_test.yml has, for each alert, a case with expected alerts and one with none."""
    checks.check_alert_tests()


# ---------------------------------------------------------------------------------- grafana, compose, k8s
def test_dashboard_panels_and_policy_variable() -> None:
    """Dashboard JSON parses, every panel has PromQL targets, the policy variable exists."""
    assert checks.check_dashboard() >= 8


def test_grafana_provisioning() -> None:
    """Datasource uid and dashboard path agree with the dashboard and compose mounts."""
    checks.check_grafana_provisioning()


def test_compose_stack() -> None:
    """Compose has Kafka (KRaft), Redis, Prometheus, Alertmanager, Grafana, two workers and the API."""
    checks.check_compose()


def test_kubernetes_manifests() -> None:
    """Manifests parse; StatefulSet has static membership and RocksDB volumes; resources are set."""
    assert checks.check_k8s() >= 9


def test_prometheus_job_names() -> None:
    """The compose scrape config uses the job names the rules and dashboard depend on."""
    config = checks.load_yaml(checks.PROMETHEUS_CONFIG)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"tierstream-worker", "tierstream-api"} <= jobs


# ------------------------------------------------------------------------------------------------ scripts
def test_check_deploy_script_passes() -> None:
    """deploy/scripts/check-deploy.sh (what CI may run on its own) succeeds."""
    require_promtool()
    result = _run(["bash", str(SCRIPTS / "check-deploy.sh")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ensure_prometheus_is_a_no_op_when_installed() -> None:
    """With promtool present the install script changes nothing and exits 0."""
    require_promtool()
    result = _run(["bash", str(SCRIPTS / "ensure-prometheus.sh")])
    assert result.returncode == 0, result.stderr
    assert "promtool present" in result.stderr
