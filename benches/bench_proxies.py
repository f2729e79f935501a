"""Sessions through proxies next to direct ones, in one run on the same echo
server (Node `ws`): tinyproxy for HTTP CONNECT, microsocks for SOCKS5 (the
target's name resolved here) and SOCKS5h (resolved by the proxy).

For each way of reaching the server:
- connect time: `sockpulse status` run `--checks` times, one session each;
  medians of its TCP connect (to the proxy, when there is one), the proxy's
  tunnel and the WebSocket upgrade;
- memory per session: an agent holding `--sessions` sessions, resident
  anonymous memory against a 1-session run of the same build and the same
  way, and the time until all were open.

usage: bench_proxies.py [--sessions 1000] [--checks 30]
Run through scripts/bench.sh --proxies, which installs what this needs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

ROOT = bench.ROOT


class Proxies:
    """tinyproxy and microsocks on free loopback ports."""

    def __init__(self, server_port, tmp, sessions):
        self.http = bench.free_port()
        conf = Path(tmp) / "tinyproxy.conf"
        conf.write_text(f"Port {self.http}\nListen 127.0.0.1\nTimeout 600\nMaxClients {sessions + 100}\n"
                        f"Allow 127.0.0.1\nUser nobody\nGroup nogroup\nConnectPort {server_port}\nLogLevel Warning\n")
        self.socks = bench.free_port()
        self.procs = [
            subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(self.socks)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        for port in (self.http, self.socks):
            bench.wait_for(lambda: bench.accepts(port), 10, f"proxy on port {port}")

    def cases(self, server_port):
        """(name, target URL, proxy setting) for each way of reaching the server."""
        return [
            ("direct", f"ws://127.0.0.1:{server_port}/", None),
            ("http CONNECT (tinyproxy)", f"ws://127.0.0.1:{server_port}/", f"http://127.0.0.1:{self.http}"),
            ("socks5 (microsocks)", f"ws://localhost:{server_port}/", f"socks5://127.0.0.1:{self.socks}"),
            ("socks5h (microsocks)", f"ws://localhost:{server_port}/", f"socks5h://127.0.0.1:{self.socks}"),
        ]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def connect_times(url, proxy, checks):
    """Medians (ms) of the TCP, proxy and upgrade phases over `checks` one-shot checks."""
    phases = {"tcp_connect_ms": [], "proxy_ms": [], "handshake_ms": []}
    for _ in range(checks):
        args = [str(bench.SOCKPULSE), "status", "--target", url, "--pings", "1", "--json"]
        if proxy:
            args += ["--proxy", proxy]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
        report = json.loads(out.stdout)[0]
        if not report["healthy"]:
            raise RuntimeError(f"status through {proxy}: {report}")
        for k in phases:
            if report.get(k) is not None:
                phases[k].append(report[k])
    return {k: statistics.median(v) if v else None for k, v in phases.items()}


class Agent(bench.SockpulseRun):
    """The agent with every session to one URL, through `proxy` if given."""

    def __init__(self, n, url, proxy, tmp):
        self.url, self.proxy = url, proxy
        super().__init__(n, [0], tmp)

    def targets_toml(self, n, ports):
        via = f'proxy = "{self.proxy}"\n' if self.proxy else ""
        return f'[[target]]\nname = "t"\nurl = "{self.url}"\nconnections = {n}\n{via}'


def memory(url, proxy, n, tmp):
    """(KiB per session, seconds until all open) for `n` sessions."""
    base = Agent(1, url, proxy, tmp)
    base.wait_all_open()
    time.sleep(1)
    one = bench.rss_kib(base.proc.pid)
    base.stop()
    agent = Agent(n, url, proxy, tmp)
    opened_after = agent.wait_all_open()
    time.sleep(3)
    per_session = (bench.rss_kib(agent.proc.pid) - one) / (n - 1)
    agent.stop()
    return per_session, opened_after


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--checks", type=int, default=30)
    args = p.parse_args()
    server, port = bench.node_server(0)
    with tempfile.TemporaryDirectory() as tmp:
        proxies = Proxies(port, tmp, args.sessions)
        rows = []
        try:
            for name, url, proxy in proxies.cases(port):
                bench.log(f"{name}: connect times")
                t = connect_times(url, proxy, args.checks)
                bench.log(f"{name}: {args.sessions} sessions")
                kib, opened = memory(url, proxy, args.sessions, tmp)
                rows.append((name, t, kib, opened))
        finally:
            proxies.stop()
            server.kill()
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"{args.sessions} sessions to one Node ws server; connect times are medians of {args.checks} `status` checks:",
        "",
        "| way | TCP connect ms | proxy tunnel ms | upgrade ms | total ms | memory/session | all open after |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t, kib, opened in rows:
        total = sum(v for v in t.values() if v is not None)
        lines.append(f"| {name} | {fmt(t['tcp_connect_ms'])} | {fmt(t['proxy_ms'])} | {fmt(t['handshake_ms'])} "
                     f"| {total:.3f} | {kib:.2f} KiB | {opened:.2f} s |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
