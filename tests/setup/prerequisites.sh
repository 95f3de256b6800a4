#!/usr/bin/env bash
# What `make test` needs beyond Python packages, set up or named: PostgreSQL and Redis answering
# on loopback (started when they do not), Debian's Chromium for the browser tests and Node.js for
# docs/hooks.md's Node example (installed with apt when this user may; otherwise it stops at once
# with the one command to run).
# Fast when all is there: `make test` runs it every time.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"  # the browser tests drive Debian's, never a download
APT_GET="${APT_GET:-apt-get}"

port_open() { python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('127.0.0.1', int(sys.argv[1]))))" "$1"; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done; echo "port $1 did not open" >&2; return 1; }
stop() { echo "make test: $1" >&2; echo "run: $2" >&2; exit 1; }

if ! port_open 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start \
    || stop "PostgreSQL does not answer on 127.0.0.1:5432 and could not be started" \
            "pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
  wait_port 5432
fi
if ! port_open 6379; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    || stop "Redis does not answer on 127.0.0.1:6379 and could not be started" \
            "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
  wait_port 6379
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "installing Debian's chromium"
  { DEBIAN_FRONTEND=noninteractive "$APT_GET" update -q && DEBIAN_FRONTEND=noninteractive "$APT_GET" install -y -q chromium; } \
    || stop "the browser tests need Debian's chromium at $CHROMIUM and it could not be installed" \
            "sudo apt-get install -y chromium"
fi
if ! command -v node >/dev/null; then
  echo "installing Debian's nodejs"
  { DEBIAN_FRONTEND=noninteractive "$APT_GET" update -q && DEBIAN_FRONTEND=noninteractive "$APT_GET" install -y -q nodejs; } \
    || stop "the hooks tests run docs/hooks.md's Node example and node could not be installed" \
            "sudo apt-get install -y nodejs"
fi
