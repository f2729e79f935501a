"""wss sessions: memory per session next to plain ws, and a reconnect storm
with and without TLS session resumption, in one run on the same server
program (Node `ws` over Node's TLS, certificates from tests/peers: ECDSA P-256 and
RSA 2048).

For each case, on a freshly started server: memory per session is resident
anonymous memory at N sessions against a 1-session run of the same build.
Then the server cuts every connection at once (`GET /drop`, as a proxy or
load balancer restart does while the TLS keys stay), and the storm is
measured until every session is open again: how many handshakes resumed,
the time until all were back, and the CPU the agent and the server spent,
as handshakes per CPU second.

usage: bench_wss.py [--sessions 2000] [--rounds 2] [--only NAME-PART]
Run through scripts/bench.sh --wss, which installs what this needs.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import bench_protocols  # noqa: E402

ROOT, PYTHON = bench.ROOT, bench.PYTHON


def handshakes(agent):
    text = bench.http_get(agent.addr, "/metrics")
    counts = {"full": 0.0, "resumed": 0.0}
    for kind, value in re.findall(r'^sockpulse_tls_handshakes_total\{kind="(\w+)",target="[^"]+"\} (\S+)', text, re.M):
        counts[kind] += float(value)
    return counts


def cpu(pid):
    return sum(bench.cpu_seconds(pid))


class Feed:
    """The Node `ws` feed, over TLS unless `plain`; `/drop` on its control port."""

    def __init__(self, key, certs):
        args = [] if key is None else ["--tls", f"{certs}/{key}.pem", f"{certs}/{key}.key"]
        self.proc = subprocess.Popen(["node", str(ROOT / "tests/peers/snapshot_server.js"), "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, NODE_PATH=str(bench.PEERS / "node/node_modules")))
        self.control = int(self.proc.stdout.readline().split()[1])
        m = re.match(r"LISTENING (\d+)", self.proc.stdout.readline())
        if not m:
            raise RuntimeError("snapshot_server.js did not start")
        self.port = int(m.group(1))
        subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)

    def drop(self):
        body = bench.http_get(f"127.0.0.1:{self.control}", "/drop")
        return int(body.split("\r\n\r\n", 1)[1].split()[0])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Nginx:
    """nginx terminating TLS in front of the feed (plain ws behind it), as
    a load balancer or ingress does; one process, so its CPU is one pid."""

    def __init__(self, feed, key, certs, tmp):
        self.port = bench.free_port()
        prefix = Path(tmp) / f"nginx-{self.port}"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(f"""master_process off;
worker_rlimit_nofile 20000;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 10000; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{self.port} ssl backlog=4096;
    ssl_certificate {certs}/{key}.pem;
    ssl_certificate_key {certs}/{key}.key;
    location / {{
      proxy_pass http://127.0.0.1:{feed.port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                      "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        bench.wait_for(lambda: bench.accepts(self.port), 10, "nginx")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def agent(feed, n, tmp, plain, certs, resumption):
    if plain:
        url, extra = f"ws://127.0.0.1:{feed.port}/", ""
    else:
        url = f"wss://localhost:{feed.port}/"
        extra = f'tls = {{ ca_file = "{certs}/ca.pem", resumption = {str(resumption).lower()} }}'
    bench_protocols.Sockpulse.targets = [(url, extra)]
    run = bench_protocols.Sockpulse(n, None, tmp)
    run.wait_all_open()
    return run


def case(name, key, resumption, n, tmp, certs, nginx=False):
    """`key`: the server's certificate (`good` is ECDSA P-256, `rsa` RSA
    2048), None for plain ws; with `nginx`, nginx holds it and terminates
    TLS in front of a plain feed."""
    row = {"case": name, "sessions": n}
    plain = key is None
    feed = Feed(None if nginx else key, certs)
    front = Nginx(feed, key, certs, tmp) if nginx else None
    server = front or feed
    try:
        one = agent(server, 1, tmp, plain, certs, resumption)
        time.sleep(2)
        base = bench.rss_kib(one.proc.pid)
        one.stop()
        run = agent(server, n, tmp, plain, certs, resumption)
        time.sleep(3)
        row["kib_per_session"] = (bench.rss_kib(run.proc.pid) - base) / (n - 1)
        before = handshakes(run)
        agent_cpu, feed_cpu, t0 = cpu(run.proc.pid), cpu(server.proc.pid), time.monotonic()
        dropped = feed.drop()
        # Until every session is open again: counted from the metrics, so
        # the poll itself costs the agent a little CPU in both cases.
        bench.wait_for(lambda: run.open_sessions() < n, 10, "the sessions to notice the drop")
        bench.wait_for(lambda: run.open_sessions() >= n, 120, "every session back")
        row["back_s"] = time.monotonic() - t0
        row["agent_cpu_s"] = cpu(run.proc.pid) - agent_cpu
        row["feed_cpu_s"] = cpu(server.proc.pid) - feed_cpu
        after = handshakes(run)
        row["dropped"] = dropped
        row["resumed"] = after["resumed"] - before["resumed"]
        row["full"] = after["full"] - before["full"]
        run.stop()
    finally:
        if front:
            front.stop()
        feed.stop()
    bench.log(json.dumps(row))
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--out", default=str(ROOT / "target/bench-wss.md"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        subprocess.run([str(PYTHON), str(ROOT / "tests/peers/make_certs.py"), str(certs)], check=True,
                       capture_output=True)
        for rnd in range(args.rounds):
            for name, key, resumption in (("ws", None, True),
                                          ("wss ECDSA, resumption on", "good", True),
                                          ("wss ECDSA, resumption off", "good", False),
                                          ("wss RSA, resumption on", "rsa", True),
                                          ("wss RSA, resumption off", "rsa", False),
                                          ("wss RSA via nginx, resumption on", "rsa", True),
                                          ("wss RSA via nginx, resumption off", "rsa", False)):
                if args.only not in name:
                    continue
                row = case(name, key, resumption, args.sessions, tmp, certs, nginx="nginx" in name)
                row["round"] = rnd + 1
                rows.append(row)
    lines = ["| round | case | sessions | memory/session | storm: resumed / full handshakes | all back after "
             "| agent CPU | agent handshakes per CPU s | server CPU | server handshakes per CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shakes = r["resumed"] + r["full"]
        if shakes:
            tls = (f"{r['resumed']:.0f} / {r['full']:.0f} | {r['back_s']:.2f} s | {r['agent_cpu_s']:.2f} s | "
                   f"{shakes / max(r['agent_cpu_s'], 1e-9):.0f} | {r['feed_cpu_s']:.2f} s | "
                   f"{shakes / max(r['feed_cpu_s'], 1e-9):.0f}")
        else:
            tls = (f"- | {r['back_s']:.2f} s | {r['agent_cpu_s']:.2f} s | - | {r['feed_cpu_s']:.2f} s | -")
        lines.append(f"| {r['round']} | {r['case']} | {r['sessions']} | {r['kib_per_session']:.2f} KiB | {tls} |")
    bench.write_report(lines, args.out)


if __name__ == "__main__":
    main()
