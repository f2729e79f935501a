#!/usr/bin/env bash
# Instructions and simulated L1 misses per probe, under valgrind's callgrind:
# a count that does not swing with the VM's noise the way CPU time does.
# N sessions (default 9000) against two local websocat echo servers, the
# README's 10 s / 5 s probe schedule; counters are zeroed after the connect
# storm and dumped after a steady window, then divided by the probes answered.
#
# usage: scripts/bench-callgrind.sh [SESSIONS] [WINDOW_SECONDS]
# SOCKPULSE_BIN=path/to/other/sockpulse counts another build the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-9000}
window=${2:-30}
command -v valgrind >/dev/null || { apt-get install -y -q valgrind >/dev/null; }
export PATH="$HOME/.cargo/bin:$PATH"
command -v websocat >/dev/null || cargo install -q websocat --locked
cargo build --release --locked -q
bin=${SOCKPULSE_BIN:-target/release/sockpulse}
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=()
for _ in 1 2; do
  port=$(free_port)
  websocat -t "ws-l:127.0.0.1:$port" mirror: >/dev/null 2>&1 &
  pids+=($!)
  ports+=("$port")
done
web=$(free_port)
{
  printf '[defaults]\nping_interval = "10s"\npong_timeout = "5s"\n[kernel]\nscan_interval = "off"\n'
  for i in 0 1; do
    printf '[[target]]\nname = "s%s"\nurl = "ws://127.0.0.1:%s/"\nconnections = %s\n' "$i" "${ports[$i]}" $((sessions / 2))
  done
} >"$work/config.toml"
sleep 0.5

RUST_LOG=error valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$work/cg.out" \
  "$bin" run --config "$work/config.toml" --web.listen-address "127.0.0.1:$web" \
  >"$work/agent.log" 2>&1 &
agent=$!
pids+=("$agent")

# The sum of the agent's series whose line starts with $1 (a regex).
metric_sum() { { curl -s "127.0.0.1:$web/metrics" || true; } | awk -v re="^$1" '$0 ~ re {s += $2} END {print s + 0}'; }
probes() { metric_sum 'sockpulse_ping_rtt_seconds_count'; }
open_sessions() { metric_sum 'sockpulse_sessions[{]state="open"'; }
# Under valgrind the connect storm takes a while; then let the first,
# spread pings settle.
for _ in $(seq 1 240); do
  [ "$(open_sessions)" -ge "$sessions" ] && break
  sleep 1
done
sleep 15
p0=$(probes)
callgrind_control -z "$agent" >/dev/null
sleep "$window"
callgrind_control -d "$agent" >/dev/null
p1=$(probes)
kill "$agent"
wait "$agent" 2>/dev/null || true

python3 - "$work/cg.out.1" $((p1 - p0)) "$sessions" "$window" <<'PY'
import sys
path, probes, sessions, window = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
events = totals = None
for line in open(path):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith(("summary:", "totals:")):
        totals = [int(x) for x in line.split()[1:]]
counts = dict(zip(events, totals))
print(f"{sessions} sessions, {window} s window, {probes} probes answered")
print(f"instructions/probe {counts['Ir'] / probes:.0f}, L1 read misses/probe {counts['D1mr'] / probes:.1f}, "
      f"L1 write misses/probe {counts['D1mw'] / probes:.1f} (all threads)")
PY
