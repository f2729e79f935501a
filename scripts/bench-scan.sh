#!/usr/bin/env bash
# Host TCP table scan cost: sockpulse's netlink and /proc paths against
# `ss -tan` and node_exporter's tcpstat, at ~2k, 20k and 100k sockets.
# Needs ~40k fds spread over helper processes; takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus-node-exporter >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null || true
fi
ulimit -n "$(ulimit -Hn)"
export NODE_EXPORTER="$(command -v prometheus-node-exporter || true)"
[ -n "$NODE_EXPORTER" ] || unset NODE_EXPORTER
cargo bench --locked -q --bench scan -- "$@"
