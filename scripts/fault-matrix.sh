#!/usr/bin/env bash
# Runs the fault-matrix tests (real faults, see tests/e2e/matrix.rs) and
# prints their results as the markdown table the README shows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh >/dev/null
rm -rf target/fault-matrix
cargo test --release --locked --test e2e -- --test-threads 2 matrix >&2
python3 - <<'PY'
import glob, json
rows = [json.load(open(f)) for f in sorted(glob.glob("target/fault-matrix/*.json"))]
print("| fault | bound | detected after | reason | kernel diagnosis | session came back |")
print("|---|---|---|---|---|---|")
for r in rows:
    detected = f"{r['detected_ms']} ms" if r["bound"] != "no false timeout" else "-"
    print(f"| {r['fault']} | {r['bound']} | {detected} | {r['reason']} | {r['diagnosis']} | {r['recovered']} |")
PY
