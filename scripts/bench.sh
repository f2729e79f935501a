#!/usr/bin/env bash
# Benchmark: sockpulse vs an idiomatic Python asyncio monitor at 1k and 9k
# sessions on the same local Node `ws` servers, plus the loopback floor.
# Takes about 6 minutes; prints a markdown table (also in target/bench-results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh >/dev/null
cargo build --release --locked
# Each process holds up to 9k sockets; the machine allows 20k files per process.
ulimit -n "$(ulimit -Hn)"
exec .peers/venv/bin/python benches/bench.py "$@"
