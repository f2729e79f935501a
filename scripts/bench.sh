#!/usr/bin/env bash
# Benchmark: sockpulse vs an idiomatic Python asyncio monitor (two probe
# schedules) at 1k and 9k sessions on the same local echo servers (websocat
# by default: Rust, no GC pauses; --server node for Node ws), plus the
# loopback floor. Takes about 12 minutes; prints a markdown table (also in
# target/bench-results.md). --floor adds the C epoll floor (benches/floor.c);
# --paired runs sockpulse and the floor at the same time over the same
# windows; --footprint prices a working set per wake-up; --pages counts the
# pages and lines one wake-up touches, under valgrind (benches/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh >/dev/null
if ! command -v websocat >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/websocat" ]; then
  echo "bench: cargo install websocat (about 2 minutes)" >&2
  cargo install -q websocat --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"
if [[ " $* " == *" --pages "* ]] && ! command -v valgrind >/dev/null 2>&1; then
  apt-get install -y -q valgrind >/dev/null
fi
cargo build --release --locked
# Each process holds up to 9k sockets; the machine allows 20k files per process.
ulimit -n "$(ulimit -Hn)"
# --protocols: Socket.IO and MQTT sessions against their servers, next to
# plain ws and the Python clients (benches/bench_protocols.py).
if [ "${1:-}" = "--protocols" ]; then
  shift
  exec .peers/venv/bin/python benches/bench_protocols.py "$@"
fi
# --wss: wss memory per session next to ws, and a reconnect storm with
# and without TLS session resumption (benches/bench_wss.py).
if [ "${1:-}" = "--wss" ]; then
  shift
  exec .peers/venv/bin/python benches/bench_wss.py "$@"
fi
# --proxies: connect times and memory per session through tinyproxy (HTTP
# CONNECT) and microsocks (SOCKS5/5h) next to direct (benches/bench_proxies.py).
if [ "${1:-}" = "--proxies" ]; then
  shift
  exec .peers/venv/bin/python benches/bench_proxies.py "$@"
fi
# --probes: /probe throughput, latency and CPU next to blackbox_exporter's
# TCP and HTTP probers on the same server (benches/bench_probes.py).
if [ "${1:-}" = "--probes" ]; then
  shift
  if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-blackbox-exporter >/dev/null
  fi
  exec .peers/venv/bin/python benches/bench_probes.py "$@"
fi
exec .peers/venv/bin/python benches/bench.py "$@"
