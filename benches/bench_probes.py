"""`/probe` throughput and latency next to blackbox_exporter, in one run on
the same loopback server (Node `ws`).

blackbox_exporter has no WebSocket prober (neither Debian's 0.23 build nor
the released ones), so it is measured with what it has on the same server:
its TCP prober (connect, close) and its HTTP prober (a GET, which the ws
server answers 426). sockpulse runs its `ws` check (connect, upgrade, one
ping and its pong, close handshake) and its `tcp` check (connect, close).

For each: `--count` requests, `--concurrency` in flight, from one asyncio
client; probes per second, latency p50/p99, and the exporter's CPU seconds
(user + kernel, from /proc) per probe, i.e. probes per CPU-second (one core).

usage: bench_probes.py [--count 3000] [--concurrency 32]
Run through scripts/bench.sh --probes, which installs what this needs.
"""
import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

BLACKBOX = os.environ.get("BLACKBOX", "prometheus-blackbox-exporter")


class ProbeAgent(bench.SockpulseRun):
    """The agent with no targets of its own (it watches its echo endpoint)
    and room for the probes in flight."""
    extra_config = '[probe]\nmax_concurrent = 256\npings = 1\n[kernel]\nscan_interval = "off"\n'
    log_filter = "warn,sockpulse::agent=info"

    def targets_toml(self, n, ports):
        return ""


def start_blackbox(tmp):
    cfg = Path(tmp) / "blackbox.yml"
    cfg.write_text("modules:\n"
                   "  tcp_connect:\n    prober: tcp\n    timeout: 5s\n"
                   "  http_426:\n    prober: http\n    timeout: 5s\n    http:\n      valid_status_codes: [426]\n")
    port = bench.free_port()
    p = subprocess.Popen([BLACKBOX, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_for(lambda: bench.accepts(port), 10, "blackbox_exporter")
    return p, f"127.0.0.1:{port}"


async def one_probe(host, port, path):
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    return time.monotonic() - start, b"probe_success 1" in body


async def load(addr, path, probes, concurrency):
    host, port = addr.rsplit(":", 1)
    latencies, failed = [], 0
    left = probes

    async def worker():
        nonlocal left, failed
        while left > 0:
            left -= 1
            took, ok = await one_probe(host, int(port), path)
            latencies.append(took)
            failed += not ok

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - start, sorted(latencies), failed


def run_case(proc, addr, path, args):
    asyncio.run(load(addr, path, min(200, args.count), args.concurrency))  # warm up
    cpu0 = sum(bench.cpu_seconds(proc.pid))
    wall, lat, failed = asyncio.run(load(addr, path, args.count, args.concurrency))
    cpu = sum(bench.cpu_seconds(proc.pid)) - cpu0
    if failed:
        raise RuntimeError(f"{failed} of {args.count} probes failed at {path}")
    return {
        "rate": args.count / wall,
        "p50": bench.percentile(lat, 0.5) * 1000,
        "p99": bench.percentile(lat, 0.99) * 1000,
        "per_cpu_s": args.count / cpu if cpu > 0 else float("inf"),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    server, port = bench.node_server(0)
    with tempfile.TemporaryDirectory() as tmp:
        agent = ProbeAgent(0, [], tmp)
        sp, sp_addr = agent.proc, agent.addr
        bb, bb_addr = start_blackbox(tmp)
        cases = [
            ("sockpulse ws (connect, upgrade, ping/pong, close)", sp, sp_addr,
             f"/probe?target=ws%3A%2F%2F127.0.0.1%3A{port}%2F"),
            ("sockpulse tcp (connect, close)", sp, sp_addr, f"/probe?target=tcp%3A%2F%2F127.0.0.1%3A{port}"),
            ("blackbox_exporter tcp (connect, close)", bb, bb_addr,
             f"/probe?target=127.0.0.1%3A{port}&module=tcp_connect"),
            ("blackbox_exporter http (GET, 426)", bb, bb_addr,
             f"/probe?target=http%3A%2F%2F127.0.0.1%3A{port}%2F&module=http_426"),
        ]
        rows = []
        try:
            for name, proc, addr, path in cases:
                bench.log(f"{name}: {args.count} probes, {args.concurrency} at once")
                rows.append((name, run_case(proc, addr, path, args)))
        finally:
            for proc in (sp, bb, server):
                proc.kill()
                proc.wait()
    version = subprocess.run([BLACKBOX, "--version"], capture_output=True, text=True)
    bb_version = re.search(r"version (\S+)", version.stdout + version.stderr)
    base = dict(rows)["blackbox_exporter tcp (connect, close)"]["per_cpu_s"]
    lines = [
        f"{args.count} probes per row, {args.concurrency} in flight, one Node ws server, one asyncio client; "
        f"blackbox_exporter {bb_version.group(1) if bb_version else '?'} (Debian):",
        "",
        "| prober | probes/s | p50 ms | p99 ms | probes per CPU-second | vs blackbox tcp |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['rate']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['per_cpu_s']:.0f} "
                     f"| {r['per_cpu_s'] / base:.2f}× |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
