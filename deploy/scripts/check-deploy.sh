#!/usr/bin/env bash
# Validate everything under deploy/ without running any service:
#   1. promtool check config   deploy/prometheus/prometheus.yml   (also loads alerts.yml)
#   2. promtool check rules    deploy/prometheus/alerts.yml
#   3. promtool test rules     deploy/prometheus/alerts_test.yml  (every alert firing and not firing)
#   4. promtool check rules    on every Grafana panel query (PromQL syntax)
#   5. amtool check-config     deploy/alertmanager/alertmanager.yml   (only if amtool is installed)
#   6. kubectl kustomize       deploy/k8s                             (only if kubectl is installed)
#   7. deploy/scripts/check_deploy_files.py: metric-name drift, runbook anchors, alert-test coverage,
#      Grafana JSON and provisioning, docker-compose and Kubernetes YAML.
# Exits non-zero, naming the failed step, on any failure. promtool missing: run `make prometheus`
# (deploy/scripts/ensure-prometheus.sh).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

failures=()
step() { # step NAME COMMAND...
    local name="$1"; shift
    local out
    if out="$("$@" 2>&1)"; then
        printf 'ok    %s\n' "$name"
    else
        printf 'FAIL  %s\n%s\n' "$name" "$(printf '%s\n' "$out" | sed 's/^/      /')" >&2
        failures+=("$name")
    fi
}

if ! command -v promtool >/dev/null 2>&1; then
    echo "check-deploy: promtool not found. Run 'make prometheus' (deploy/scripts/ensure-prometheus.sh)." >&2
    exit 2
fi

step "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
step "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
# promtool resolves rule_files relative to the working directory: run the tests from their folder.
step "promtool test rules deploy/prometheus/alerts_test.yml" \
    bash -c 'cd deploy/prometheus && promtool test rules alerts_test.yml'

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if "$PYTHON" deploy/scripts/check_deploy_files.py --dashboard-rules "$tmp/dashboard-rules.yml" 2>"$tmp/err"; then
    step "grafana panel queries parse (promtool check rules)" promtool check rules "$tmp/dashboard-rules.yml"
else
    printf 'FAIL  grafana panel queries: cannot extract them\n%s\n' "$(cat "$tmp/err")" >&2
    failures+=("grafana panel queries")
fi

if command -v amtool >/dev/null 2>&1; then
    step "amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config deploy/alertmanager/alertmanager.yml
else
    echo "skip  amtool check-config (amtool not installed; Debian package prometheus-alertmanager)"
fi
if command -v kubectl >/dev/null 2>&1; then
    step "kubectl kustomize deploy/k8s" kubectl kustomize deploy/k8s
else
    echo "skip  kubectl kustomize (kubectl not installed)"
fi

if ! "$PYTHON" deploy/scripts/check_deploy_files.py; then
    failures+=("deploy/scripts/check_deploy_files.py")
fi

if [ "${#failures[@]}" -gt 0 ]; then
    printf '\ncheck-deploy: %d check(s) failed:\n' "${#failures[@]}" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "check-deploy: all deploy checks passed"
