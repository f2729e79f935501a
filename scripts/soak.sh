#!/usr/bin/env bash
# The long soak: real peers, faults at random, 10 minutes by default
# (CI runs the same test for 40 s). Prints the summary from target/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh >/dev/null
export SOCKPULSE_SOAK_SECS="${1:-600}"
cargo test --release --locked --test e2e -- --test-threads 1 soak >&2
cat target/soak.json; echo
