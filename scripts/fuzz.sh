#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time each,
# starting from the committed seeds in fuzz/seeds/<target>. A crash or a
# failed assertion fails the script; libFuzzer leaves the input under
# fuzz/artifacts/<target>/; a finding is kept in fuzz/regressions/<target>/
# (replayed every run) and becomes a unit test named after what it found.
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]   (default 30 s, all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs="${1:-${SOCKPULSE_FUZZ_SECS:-30}}"
shift || true
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo install cargo-fuzz"
  cargo install -q cargo-fuzz --locked
fi
# cargo-fuzz passes -Z flags (sanitizer, coverage); only the stable toolchain
# exists here, and RUSTC_BOOTSTRAP lets it accept them.
export RUSTC_BOOTSTRAP=1
cargo fuzz build

targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
failed=()
for t in "${targets[@]}"; do
  corpus="target/corpus/$t"
  mkdir -p "$corpus"
  dirs=("$corpus" "seeds/$t")
  # Earlier findings are replayed first, every run.
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  echo "fuzz: $t for ${secs}s"
  if ! cargo fuzz run "$t" "${dirs[@]}" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>"target/$t.log"; then
    failed+=("$t")
    tail -40 "target/$t.log" >&2
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "target/$t.log" | sed "s/^/fuzz: $t /" || true
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no findings"
