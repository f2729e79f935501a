#!/usr/bin/env bash
# The whole test suite: installs the real peers, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
cargo build --release --locked --all-targets 2>&1 | tail -n 3
# The packaging test installs this .deb with dpkg.
bash scripts/build-deb.sh
cargo test --release --locked --lib --bins --tests -- --test-threads 2
# Coverage-guided fuzzing of every parser and of the session core, bounded
# (SOCKPULSE_FUZZ_SECS per target; scripts/fuzz.sh 600 for a long run).
bash scripts/fuzz.sh "${SOCKPULSE_FUZZ_SECS:-20}"
