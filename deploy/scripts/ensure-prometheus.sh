#!/usr/bin/env bash
# Make sure `promtool` is available (used by `make test` to check the Prometheus config, the alert rules
# and their unit tests). Installs the Debian package `prometheus` when promtool is missing.
#
#   deploy/scripts/ensure-prometheus.sh        # idempotent: does nothing when promtool is on PATH
#
# * Runs apt-get update first, then installs `prometheus` without recommends (no node exporter).
# * The package's maintainer scripts would start a prometheus daemon on :9090. We block that with a
#   temporary /usr/sbin/policy-rc.d (exit 101 = "action forbidden") when none exists, and afterwards stop
#   and disable the service if a service manager started it anyway. Nothing is left listening.
# * Needs root (or password-less sudo). Not root and no sudo: the script says what to run and exits 1.
set -euo pipefail

log() { printf 'ensure-prometheus: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then
    log "promtool present: $(promtool --version 2>&1 | head -n1)"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        log "promtool is missing and installing it needs root."
        log "Run as root:   apt-get update && apt-get install -y --no-install-recommends prometheus"
        log "or:            sudo deploy/scripts/ensure-prometheus.sh   (then re-run make)"
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "promtool is missing and this is not a Debian/Ubuntu machine (no apt-get)."
    log "Install Prometheus 2.x so that 'promtool' is on PATH, then re-run."
    exit 1
fi

POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
cleanup() {
    if [ "$CREATED_POLICY" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT

if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, by deploy/scripts/ensure-prometheus.sh: start no services\nexit 101\n' \
        | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 0755 "$POLICY"
    CREATED_POLICY=1
fi

export DEBIAN_FRONTEND=noninteractive
log "running apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
log "installing the Debian package prometheus (for promtool)"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus >/dev/null

# Belt and braces: if a service manager started the daemon anyway, stop it and keep it off.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    "${SUDO[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

if ! command -v promtool >/dev/null 2>&1; then
    log "apt-get installed prometheus but promtool is still not on PATH"
    exit 1
fi
log "installed: $(promtool --version 2>&1 | head -n1)"
