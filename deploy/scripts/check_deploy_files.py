"""Static checks of ``deploy/`` that need no running services (used by check-deploy.sh and tests/deploy).

Checks:

- metric drift: every metric name used by the alert rules and the Grafana dashboard exists in
  ``streams/metrics.py``, the API contract (``API_METRICS``), Faust's Prometheus sensor, or is a standard
  series (``up``, ``ALERTS``, ...);
- alert rules: ``for:``, a known severity, summary/description/runbook_url, runbook anchor present in
  ``docs/runbook.md``, and each alert tested firing and not firing in ``alerts_test.yml``;
- Grafana: the dashboard parses, every panel has PromQL targets, a ``policy`` variable exists, and the
  provisioning files point where compose mounts the dashboards;
- docker-compose and Kubernetes YAML parse and hold what issue 7 asks for.

``python deploy/scripts/check_deploy_files.py`` runs them all and exits 1 on any failure;
``--dashboard-rules FILE`` writes the dashboard's queries as a Prometheus rule file, so that
``promtool check rules FILE`` parses every panel's PromQL.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tierstream.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
RUNBOOK = REPO / "docs" / "runbook.md"
WORKER_METRICS = REPO / "streams" / "metrics.py"

#: Metrics of the HTTP API (a contract with tierstream/api/metrics.py): name -> type.
API_METRICS: dict[str, str] = {
    "tierstream_api_requests_total": "counter",
    "tierstream_api_request_seconds": "histogram",
    "tierstream_readmodel_last_write_timestamp_seconds": "gauge",
}
#: Series every Prometheus has (scrape and rule-evaluation series).
STANDARD_SERIES: frozenset[str] = frozenset(
    {
        "up",
        "ALERTS",
        "ALERTS_FOR_STATE",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
#: Prefixes of the default prometheus_client collectors (process, platform, GC).
STANDARD_PREFIXES: tuple[str, ...] = ("process_", "python_")
#: Name prefix of Faust's Prometheus sensor series (it defaults to the app id, TIERSTREAM_APP_ID).
FAUST_PREFIX = "tierstream"

SEVERITIES = frozenset({"critical", "warning"})
COMPOSE_SERVICES = frozenset({"kafka", "redis", "prometheus", "alertmanager", "grafana", "worker-1", "worker-2", "api"})
#: Grafana variables replaced by PromQL-valid values before checking dashboard queries.
GRAFANA_SUBSTITUTIONS: dict[str, str] = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$policy": ".*",
    "$instance": ".*",
}

_PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class CheckError(Exception):
    """A deploy file breaks a rule; the message says which file and what."""


# ----------------------------------------------------------------------------------------- metric names
def series_of(name: str, kind: str) -> set[str]:
    """The exposed series names of one metric as prometheus_client renders them."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind in ("histogram", "summary"):
        series = {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
        if kind == "histogram":
            series.add(f"{name}_bucket")
        return series
    return {name}


def worker_metrics(path: Path = WORKER_METRICS) -> dict[str, str]:
    """Metric name -> type declared in streams/metrics.py (read with ast, nothing imported)."""
    kinds = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        fname = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        first = node.args[0]
        if fname in kinds and isinstance(first, ast.Constant) and isinstance(first.value, str):
            found[first.value] = kinds[fname]
    if not found:
        raise CheckError(f"{path}: no Counter/Gauge/Histogram definitions found")
    return found


def faust_series(prefix: str = FAUST_PREFIX) -> set[str]:
    """Series of Faust's Prometheus sensor (from the installed faust package), with our app prefix."""
    # find_spec raises for an already imported faust (it replaces its module with a lazy object without
    # __spec__): ask the module itself then.
    module = sys.modules.get("faust")
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        spec = importlib.util.find_spec("faust")
        origin = spec.origin if spec is not None else None
    if origin is None:
        return set()
    source = Path(origin).parent / "sensors" / "prometheus.py"
    if not source.exists():
        return set()
    text = source.read_text(encoding="utf-8")
    series: set[str] = set()
    for kind, suffix in re.findall(r"(Counter|Gauge|Histogram)\(\s*f\"\{app_name\}_([a-z0-9_]+)\"", text):
        series |= series_of(f"{prefix}_{suffix}", kind.lower())
    return series


def known_series() -> set[str]:
    """Every series name the alert rules and dashboard may use (standard prefixes aside)."""
    series: set[str] = set(STANDARD_SERIES)
    for name, kind in {**worker_metrics(), **API_METRICS}.items():
        series |= series_of(name, kind)
    return series | faust_series()


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (label matchers, groupings and functions removed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range / subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        if word.lower() in _PROMQL_KEYWORDS or word.startswith("$"):
            continue
        if match.start() > 0 and text[match.start() - 1] in "$.0123456789":
            continue  # part of a variable or a number (1e3)
        if re.match(r"\s*\(", text[match.end() :]):
            continue  # function call
        names.add(word)
    return names


def unknown_metric_names(exprs: Iterable[str], known: set[str]) -> dict[str, set[str]]:
    """Unknown metric name -> the expressions that use it."""
    unknown: dict[str, set[str]] = {}
    for expr in exprs:
        for name in promql_metric_names(expr):
            if name not in known and not name.startswith(STANDARD_PREFIXES):
                unknown.setdefault(name, set()).add(expr)
    return unknown


# ------------------------------------------------------------------------------------------------- alerts
def load_yaml(path: Path) -> Any:
    """One YAML document, with the file named in the error if it does not parse."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CheckError(f"{path}: {exc}") from exc


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every alerting rule of the rule file, in order."""
    doc = load_yaml(path)
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most markdown renderers) give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors(path: Path = RUNBOOK) -> set[str]:
    """Anchors of all headings of the runbook (explicit <a id=...> / {#id} anchors included)."""
    text = path.read_text(encoding="utf-8")
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}
    anchors |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', text))
    return anchors


def check_alert_rules() -> list[str]:
    """Structure of every alert: for, severity, annotations, runbook anchor. Returns the alert names."""
    anchors = runbook_anchors()
    names: list[str] = []
    problems: list[str] = []
    for rule in alert_rules():
        name = rule["alert"]
        names.append(name)
        if not rule.get("for"):
            problems.append(f"{name}: no 'for:'")
        severity = rule.get("labels", {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{name}: severity {severity!r} not in {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append(f"{name}: annotation {key!r} missing")
        url = annotations.get("runbook_url", "")
        match = re.fullmatch(r"docs/runbook\.md#([\w-]+)", url)
        if not match:
            problems.append(f"{name}: runbook_url {url!r} is not docs/runbook.md#<anchor>")
        elif match.group(1) not in anchors:
            problems.append(f"{name}: anchor #{match.group(1)} has no heading in {RUNBOOK.relative_to(REPO)}")
    if len(set(names)) != len(names):
        problems.append("duplicate alert names")
    if problems:
        raise CheckError(f"{ALERTS.relative_to(REPO)}:\n  " + "\n  ".join(problems))
    return names


def check_alert_tests() -> None:
    """Every alert is unit-tested at least once firing and once not firing in alerts_test.yml."""
    doc = load_yaml(ALERTS_TEST)
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    problems = []
    for name in (rule["alert"] for rule in alert_rules()):
        if name not in firing:
            problems.append(f"{name}: no test where it fires")
        if name not in quiet:
            problems.append(f"{name}: no test where it does not fire")
    if problems:
        raise CheckError(f"{ALERTS_TEST.relative_to(REPO)}:\n  " + "\n  ".join(problems))


def alert_exprs() -> list[str]:
    """The PromQL of every rule (alerting and recording)."""
    doc = load_yaml(ALERTS)
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


# ------------------------------------------------------------------------------------------------ grafana
def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    """The dashboard JSON, parsed."""
    try:
        return json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckError(f"{DASHBOARD}: {exc}") from exc


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of the dashboard."""
    return [
        (panel.get("title", "?"), target.get("refId", "?"), target.get("expr", ""))
        for panel in _panels(dashboard()["panels"])
        if panel.get("type") != "row"
        for target in panel.get("targets", [])
    ]


def dashboard_variable_queries() -> list[str]:
    """The PromQL inside label_values(...) queries of templating variables."""
    exprs = []
    for var in dashboard().get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip()) if var.get("type") == "query" else None
        if match:
            exprs.append(match.group(1))
    return exprs


def check_dashboard() -> int:
    """Panels have targets with PromQL; ids unique; the policy variable exists. Returns the panel count."""
    dash = dashboard()
    problems = []
    ids: list[int] = []
    count = 0
    for panel in _panels(dash.get("panels", [])):
        ids.append(panel.get("id"))
        if panel.get("type") == "row":
            continue
        count += 1
        title = panel.get("title") or f"panel {panel.get('id')}"
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no targets")
        for target in targets:
            if not str(target.get("expr", "")).strip():
                problems.append(f"{title}: target {target.get('refId')} has no expr")
        if "gridPos" not in panel:
            problems.append(f"{title}: no gridPos")
    if len(set(ids)) != len(ids):
        problems.append("panel ids are not unique")
    variables = {var.get("name") for var in dash.get("templating", {}).get("list", [])}
    if "policy" not in variables:
        problems.append("no templated 'policy' variable")
    if not dash.get("uid") or not dash.get("title"):
        problems.append("dashboard needs a uid and a title")
    if count == 0:
        problems.append("no panels")
    if problems:
        raise CheckError(f"{DASHBOARD.relative_to(REPO)}:\n  " + "\n  ".join(problems))
    return count


def dashboard_rules_yaml() -> str:
    """Every dashboard query as a recording rule, Grafana variables substituted, for promtool check rules."""
    rules = []
    for i, (title, ref, expr) in enumerate(dashboard_targets()):
        for var, value in GRAFANA_SUBSTITUTIONS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard_check:query_{i}", "expr": expr, "labels": {"panel": f"{title} / {ref}"}})
    return yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False)


def check_grafana_provisioning() -> None:
    """Datasource and dashboard provider parse; the provider's path is where compose mounts the JSON."""
    datasources = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")
    uids = {ds.get("uid") for ds in datasources["datasources"] if ds.get("type") == "prometheus"}
    providers = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "tierstream.yml")["providers"]
    paths = {p["options"]["path"] for p in providers}
    mounts = {
        volume.split(":")[1]
        for volume in load_yaml(COMPOSE)["services"]["grafana"].get("volumes", [])
        if isinstance(volume, str) and volume.count(":") >= 1
    }
    problems = []
    if "prometheus" not in uids:
        problems.append("no Prometheus datasource with uid 'prometheus' (the dashboard's default)")
    if not paths <= mounts:
        problems.append(f"dashboard provider paths {sorted(paths - mounts)} are not mounted in compose's grafana")
    if problems:
        raise CheckError(f"{GRAFANA_PROVISIONING.relative_to(REPO)}:\n  " + "\n  ".join(problems))


# -------------------------------------------------------------------------------------- compose and k8s
def check_compose() -> None:
    """Services present, Kafka in KRaft mode, bind mounts and build files exist, workers distinct members."""
    doc = load_yaml(COMPOSE)
    base = COMPOSE.parent
    services: dict[str, Any] = doc.get("services", {})
    problems = []
    missing = COMPOSE_SERVICES - services.keys()
    if missing:
        problems.append(f"services missing: {sorted(missing)}")
    roles = str(services.get("kafka", {}).get("environment", {}).get("KAFKA_PROCESS_ROLES", ""))
    if "controller" not in roles:
        problems.append("kafka is not in KRaft mode (KAFKA_PROCESS_ROLES lacks controller)")
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else ""
            if source.startswith((".", "/")) and not (base / source).exists():
                problems.append(f"{name}: mounted path {source} does not exist")
        build = service.get("build")
        if isinstance(build, dict):
            dockerfile = base / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            if not dockerfile.exists():
                problems.append(f"{name}: {dockerfile} does not exist")
    ids = [services.get(w, {}).get("environment", {}).get("TIERSTREAM_INSTANCE_ID") for w in ("worker-1", "worker-2")]
    if None in ids or len(set(ids)) != 2:
        problems.append(f"workers need distinct TIERSTREAM_INSTANCE_ID values, found {ids}")
    if problems:
        raise CheckError(f"{COMPOSE.relative_to(REPO)}:\n  " + "\n  ".join(problems))


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """(file, manifest) of every resource listed in deploy/k8s/kustomization.yaml."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    docs = []
    for resource in kustomization["resources"]:
        path = K8S / resource
        if not path.exists():
            raise CheckError(f"{path}: listed in kustomization.yaml but missing")
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            raise CheckError(f"{path}: {exc}") from exc
        docs.extend((path, doc) for doc in loaded if doc)
    return docs


def check_k8s() -> int:
    """Manifests parse and hold issue 7's requirements. Returns the number of resources."""
    docs = k8s_documents()
    problems = []
    kinds: dict[str, list[dict[str, Any]]] = {}
    for path, doc in docs:
        if not {"apiVersion", "kind", "metadata"} <= doc.keys() or not doc["metadata"].get("name"):
            problems.append(f"{path.name}: a document lacks apiVersion, kind or metadata.name")
            continue
        kinds.setdefault(doc["kind"], []).append(doc)
    for kind in ("Namespace", "ConfigMap", "Secret", "StatefulSet", "Deployment", "Service", "PodDisruptionBudget"):
        if kind not in kinds:
            problems.append(f"no {kind}")
    if "PodMonitor" not in kinds and "ServiceMonitor" not in kinds:
        problems.append("no PodMonitor or ServiceMonitor")
    for workload in kinds.get("StatefulSet", []) + kinds.get("Deployment", []):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            resources = container.get("resources", {})
            if not resources.get("requests") or not resources.get("limits"):
                problems.append(
                    f"{workload['metadata']['name']}/{container['name']}: needs resource requests and limits"
                )
    for sts in kinds.get("StatefulSet", []):
        name = sts["metadata"]["name"]
        spec = sts["spec"]
        containers = spec["template"]["spec"]["containers"]
        env = {e["name"]: e for c in containers for e in c.get("env", [])}
        field = env.get("TIERSTREAM_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field != "metadata.name":
            problems.append(f"{name}: TIERSTREAM_INSTANCE_ID must come from the pod name (static membership)")
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        mounts = {m["name"]: m["mountPath"] for c in containers for m in c.get("volumeMounts", [])}
        if not any(mounts.get(claim) == "/var/lib/tierstream" for claim in claims):
            problems.append(f"{name}: no volumeClaimTemplate mounted at /var/lib/tierstream")
        services = {s["metadata"]["name"]: s for s in kinds.get("Service", [])}
        headless = services.get(spec.get("serviceName", ""))
        if not headless or headless["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: serviceName must name a headless Service")
    if problems:
        raise CheckError(f"{K8S.relative_to(REPO)}:\n  " + "\n  ".join(problems))
    return len(docs)


# ----------------------------------------------------------------------------------------------- driver
def check_metric_drift() -> int:
    """Alert and dashboard PromQL only use known metric names. Returns the number of names checked."""
    exprs = alert_exprs() + [expr for _, _, expr in dashboard_targets()] + dashboard_variable_queries()
    known = known_series()
    unknown = unknown_metric_names(exprs, known)
    if unknown:
        lines = [f"{name}: in {sorted(uses)[0]!r}" for name, uses in sorted(unknown.items())]
        raise CheckError(
            "metric names not defined in streams/metrics.py, the API metrics or standard series:\n  "
            + "\n  ".join(lines)
        )
    return len({name for expr in exprs for name in promql_metric_names(expr)})


CHECKS: dict[str, Callable[[], object]] = {
    "alert rules (for, severity, annotations, runbook anchors)": check_alert_rules,
    "alert unit tests cover firing and not firing": check_alert_tests,
    "metric names (drift against streams/metrics.py and the API)": check_metric_drift,
    "grafana dashboard": check_dashboard,
    "grafana provisioning": check_grafana_provisioning,
    "docker-compose": check_compose,
    "kubernetes manifests": check_k8s,
    "alertmanager config parses": lambda: load_yaml(ALERTMANAGER_CONFIG)["route"]["receiver"],
}


def main(argv: list[str] | None = None) -> int:
    """Run every check (or write the dashboard rule file); exit status 1 when any check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard-rules", type=Path, help="write the dashboard queries as a rule file and exit")
    args = parser.parse_args(argv)
    if args.dashboard_rules:
        args.dashboard_rules.write_text(dashboard_rules_yaml(), encoding="utf-8")
        return 0
    failed = 0
    for title, check in CHECKS.items():
        try:
            result = check()
        except (CheckError, KeyError, TypeError) as exc:
            failed += 1
            print(f"FAIL  {title}\n  {exc}", file=sys.stderr)
        else:
            detail = f" ({len(result)} alerts)" if isinstance(result, list) else f" ({result})" if result else ""
            print(f"ok    {title}{detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
