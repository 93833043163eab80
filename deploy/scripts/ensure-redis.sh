#!/usr/bin/env bash
# Make sure a Redis is reachable or startable: tests and the demo use REDIS_URL when it answers and
# otherwise start `redis-server` on a free port themselves. Installs redis-server when missing and root.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if command -v redis-cli >/dev/null 2>&1 && redis-cli -u "$url" ping >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server missing: installing the Debian package redis-server" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
cat >&2 <<MSG
No Redis answers at $url and redis-server is not installed.
Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)
or set REDIS_URL to a running Redis.
MSG
exit 1
