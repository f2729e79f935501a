"""sockpulse holding application-protocol sessions against their real
servers, next to plain ws in the same run, and next to the idiomatic Python
program a user would write for the same job.

- Socket.IO: Node `socket.io` 4 servers (heartbeat 10 s + 5 s, no events),
  sockpulse `protocol = "socketio"` vs the `python-socketio` client.
- MQTT over WebSocket: a private RabbitMQ node (web_mqtt), sockpulse
  `protocol = "mqtt"` (PINGREQ and a WebSocket ping every 10 s) vs `aiomqtt`
  clients in one asyncio loop (keep-alive 20 s: a PINGREQ every 20 s).
- Plain ws: Node `ws` echo servers, sockpulse's default, as the reference.

Memory per session is resident anonymous memory against a 1-session run of
the same monitor; CPU is over a steady window after every session opened.
Each measurement gets freshly started servers.

usage: bench_protocols.py [--sessions 1000] [--window 60] [--servers 2]
Run through scripts/bench.sh --protocols, which installs what this needs.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the plain-ws benchmark's helpers)

ROOT, PEERS, PYTHON, SOCKPULSE = bench.ROOT, bench.PEERS, bench.PYTHON, bench.SOCKPULSE
INTERVAL, PONG_TIMEOUT = 10, 5


def node_servers(n, script, args):
    env = dict(os.environ, NODE_PATH=str(PEERS / "node/node_modules"))
    procs, ports = [], []
    for _ in range(n):
        p = subprocess.Popen(["node", str(ROOT / "tests/peers" / script), "0", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        m = re.match(r"LISTENING (\d+)", p.stdout.readline())
        if not m:
            raise RuntimeError(f"{script} did not start")
        subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
        procs.append(p)
        ports.append(int(m.group(1)))
    return procs, ports


class RabbitMq:
    """A private node with web_mqtt, as the tests start it."""

    def __init__(self, tmp):
        self.node = f"sockpulse-bench-{os.getpid()}@localhost"
        self.ports = [bench.free_port() for _ in range(5)]
        self.mqtt_ws = self.ports[2]
        self.proc = subprocess.Popen(
            ["bash", str(ROOT / "tests/peers/rabbitmq.sh"), str(Path(tmp) / "rabbitmq"), self.node,
             *map(str, self.ports)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bench.wait_for(lambda: bench.accepts(self.mqtt_ws), 120, "rabbitmq web_mqtt")

    def stop(self):
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], capture_output=True, timeout=120)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["epmd", "-kill"], capture_output=True)


class Sockpulse(bench.SockpulseRun):
    """sockpulse with `targets`: (url, extra TOML) each, the sessions spread over them."""

    targets = []
    log_filter = "warn,sockpulse::agent=info"

    def targets_toml(self, n, _ports):
        return "".join(f'[[target]]\nname = "t{i}"\nurl = "{url}"\nconnections = {count}\n{extra}\n'
                       for i, (url, count, extra) in enumerate(split(self.targets, n)))


def split(targets, n):
    """`n` sessions spread over `targets` (url, extra) as (url, count, extra)."""
    base, extra_n = divmod(n, len(targets))
    return [(url, base + (1 if i < extra_n else 0), extra) for i, (url, extra) in enumerate(targets)
            if base + (1 if i < extra_n else 0)]


class PythonProgram:
    """A baseline program that prints `ALL_OPEN` and measures no RTT."""

    argv = []

    def __init__(self, n, _ports, tmp):
        self.n = n
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(PYTHON), *self.argv(n)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)

    def wait_all_open(self):
        line = bench.wait_for(lambda: self.proc.stdout.readline(), 300, f"{self.n} python sessions")
        if not line.startswith("ALL_OPEN"):
            raise RuntimeError(f"python baseline: {line!r}")
        return time.monotonic() - self.started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return []


def scenarios(args, tmp):
    """(protocol, monitor name, class factory, server start/stop) for each
    measurement; classes are built per run to carry the servers' ports."""

    def socketio():
        procs, ports = node_servers(args.servers, "socketio_server.js", ["--quiet", "--heartbeat", "10000,5000"])
        urls = [(f"ws://127.0.0.1:{p}/", 'protocol = "socketio"') for p in ports]
        return procs, urls, lambda: [p.terminate() for p in procs]

    def plain():
        procs, ports = node_servers(args.servers, "ws_server.js", [])
        urls = [(f"ws://127.0.0.1:{p}/", "") for p in ports]
        return procs, urls, lambda: [p.terminate() for p in procs]

    def mqtt():
        rabbit = RabbitMq(tmp)
        url = f"ws://127.0.0.1:{rabbit.mqtt_ws}/ws"
        return rabbit, [(url, 'protocol = "mqtt"\nmqtt = { username = "guest", password = "guest" }')], rabbit.stop

    def sp(urls):
        return type("Run", (Sockpulse,), {"targets": urls, "name": "sockpulse"})

    def py_sio(urls):
        specs = lambda n: [f"{u}:{c}" for u, c, _ in split(urls, n)]
        return type("Run", (PythonProgram,), {
            "argv": staticmethod(lambda n: [str(ROOT / "benches/py_socketio_monitor.py"), *specs(n)]),
            "name": "python-socketio client"})

    def py_mqtt(urls):
        port = re.search(r":(\d+)/", urls[0][0]).group(1)
        return type("Run", (PythonProgram,), {
            "argv": staticmethod(lambda n: [str(ROOT / "benches/py_mqtt_monitor.py"), "127.0.0.1", port, "/ws",
                                            str(n), "guest", "guest"]),
            "name": "aiomqtt clients"})

    return [
        ("ws", "sockpulse", plain, sp),
        ("socketio", "sockpulse", socketio, sp),
        ("socketio", "python-socketio client", socketio, py_sio),
        ("mqtt", "sockpulse", mqtt, sp),
        ("mqtt", "aiomqtt clients", mqtt, py_mqtt),
    ]


def measure(start, make, n, tmp, window):
    servers, urls, stop = start()
    try:
        return bench.measure(make(urls), n, None, tmp, window)
    finally:
        stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "target/bench-protocols.md"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the RabbitMQ node runs as its own user
        for protocol, monitor, start, make in scenarios(args, tmp):
            base = measure(start, make, 1, tmp, 3)[0]
            rss, t_open, (cpu, kernel), rtts, _ = measure(start, make, args.sessions, tmp, args.window)
            row = {"protocol": protocol, "monitor": monitor, "sessions": args.sessions,
                   "rss_per_session_kib": (rss - base) / (args.sessions - 1), "cpu_share": cpu,
                   "kernel_share": kernel, "open_s": t_open, "samples": len(rtts),
                   "p50_ms": bench.percentile(rtts, 0.5) / 1e3, "p99_ms": bench.percentile(rtts, 0.99) / 1e3}
            bench.log(json.dumps(row))
            rows.append(row)
    lines = ["| protocol | monitor | sessions | memory/session | CPU (one core) | of it kernel | time to open all "
             "| probe RTT p50 | p99 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rtt = (f"{r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms" if r["samples"] else "- | -")
        lines.append(f"| {r['protocol']} | {r['monitor']} | {r['sessions']} | {r['rss_per_session_kib']:.2f} KiB | "
                     f"{100 * r['cpu_share']:.2f}% | {100 * r['kernel_share']:.2f}% | {r['open_s']:.2f} s | {rtt} |")
    lines.append("")
    for protocol in ("socketio", "mqtt"):
        sp = next(r for r in rows if r["protocol"] == protocol and r["monitor"] == "sockpulse")
        py = next(r for r in rows if r["protocol"] == protocol and r["monitor"] != "sockpulse")
        lines.append(f"{protocol}: {py['rss_per_session_kib'] / sp['rss_per_session_kib']:.1f}x less memory per "
                     f"session and {py['cpu_share'] / max(sp['cpu_share'], 1e-9):.1f}x less CPU than {py['monitor']}.")
    bench.write_report(lines, args.out)


if __name__ == "__main__":
    main()
