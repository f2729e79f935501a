"""sockpulse vs an idiomatic Python asyncio monitor, in one run on the same servers
(the same server programs, started afresh for every measurement).

For each session count: open N WebSocket sessions against Node `ws` (or,
with --server websocat, websocat) echo servers in separate processes, ping
each every 10 s with a 5 s pong deadline, and measure for both monitors: RSS per session (against a 1-session run of
the same monitor), CPU share of one core over a steady window, time to open
every session, and ping RTT p50/p99/max over that window. The loopback
1-byte TCP round trip is measured in the same run as the floor.

usage: bench.py [--sessions 1000,9000] [--window 60] [--servers 2] [--server websocat|node] [--out FILE]
       bench.py --floor [--pin] ...          adds the C epoll floor (benches/floor.c)
       bench.py --paired [--windows 6] ...   sockpulse and the floor at the same time, same windows
       bench.py --footprint 0,300,300@6 ...  the floor with a working set, beside sockpulse
       bench.py --pages ...                  pages and lines one wake-up touches (valgrind)
Run through scripts/bench.sh, which builds and installs what this needs.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("SOCKPULSE_PEERS_DIR", ROOT / ".peers"))
# SOCKPULSE_BIN compares another build against the same servers.
SOCKPULSE = Path(os.environ.get("SOCKPULSE_BIN", ROOT / "target/release/sockpulse"))
PYTHON = PEERS / "venv/bin/python"
INTERVAL, PONG_TIMEOUT = 10, 5
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def rss_kib(pid):
    """Resident anonymous memory (RssAnon): what sessions cost. File-backed
    pages (the binary's code, mapped in as different paths run) are shared
    and not per-session state; in VmRSS they swung a 1k-session figure by
    ±0.3 KiB/session between builds."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """(user, kernel) CPU seconds so far, in clock ticks (10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def thread_runtimes(pid):
    """(thread name, CPU seconds so far) for each live thread of `pid`, from
    the scheduler's own nanosecond count (/proc/PID/task/*/schedstat).
    Threads that ended are not counted: for long-lived threads only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
        yield name, ns / 1e9


def cpu_sample(pid):
    """(total, user, kernel) CPU seconds so far. The total is the scheduler's
    own nanosecond count, summed over the threads: /proc/PID/stat counts in
    10 ms ticks, which for a process using 1 % of a core over a 30 s window
    is 30 ticks, ±3 % from rounding alone. User and kernel come from the ticks
    and serve only to split a window's precise total."""
    total = sum(seconds for _, seconds in thread_runtimes(pid))
    return (total, *cpu_seconds(pid))


def window_cpu(before, after, wall):
    """(share of a core, of it kernel) between two `cpu_sample`s."""
    total = (after[0] - before[0]) / wall
    user, kernel = after[1] - before[1], after[2] - before[2]
    return total, (total * kernel / (user + kernel) if user + kernel else 0.0)


def wait_for(pred, timeout, what, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# --pin: during the steady window the monitor runs on CPU 0 and the servers
# on CPU 1 (this VM has two), so each monitor's probes cross the same path.
# Unpinned, where the scheduler happens to put a monitor next to a server
# swung the same C floor's CPU by ±15 % between measurements; pinned, ±1 %.
PIN = {"monitor": None, "servers": None}


def pin(pid, cpus):
    """Every thread of `pid` onto `cpus` (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:
            pass  # a thread that just ended


def start_servers(n, kind="websocat"):
    """`start_server_processes`, pinned with --pin."""
    procs, ports = start_server_processes(n, kind)
    if PIN["servers"]:
        for p in procs:
            pin(p.pid, PIN["servers"])
    return procs, ports


def start_server_processes(n, kind):
    """`n` echo servers in their own processes: websocat (Rust, no garbage
    collector, so no server pauses in the RTT tails) or Node `ws`."""
    if kind == "websocat":
        websocat = os.environ.get("WEBSOCAT", "websocat")
        procs, ports = [], []
        for _ in range(n):
            port = free_port()
            procs.append(subprocess.Popen([websocat, "-t", f"ws-l:127.0.0.1:{port}", "mirror:"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
            wait_for(lambda: accepts(port), 10, f"websocat on port {port}")
        return procs, ports
    procs, ports = [], []
    env = dict(os.environ, NODE_PATH=str(PEERS / "node/node_modules"))
    for _ in range(n):
        p = subprocess.Popen(
            ["node", str(ROOT / "tests/peers/ws_server.js"), "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        line = p.stdout.readline()
        m = re.match(r"LISTENING (\d+)", line)
        if not m:
            raise RuntimeError(f"node server did not start: {line!r}")
        procs.append(p)
        ports.append(int(m.group(1)))
        # Keep draining its output so the pipe never blocks it.
        subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
    return procs, ports


def split(n, ports):
    base, extra = divmod(n, len(ports))
    return [(port, base + (1 if i < extra else 0)) for i, port in enumerate(ports)]


def http_get(addr, path, timeout=5):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


class SockpulseRun:
    name = "sockpulse"
    launcher = []  # a command it runs under (see `wake_pages`)
    keep_fds = ()
    slowed = 1  # how much slower than native that makes it
    extra_config = '[kernel]\nscan_interval = "off"\n'
    log_filter = "info"

    def targets_toml(self, n, ports):
        """The `[[target]]` tables: `n` plain-ws sessions spread over `ports`."""
        return "".join(f'[[target]]\nname = "s{i}"\nurl = "ws://127.0.0.1:{port}/"\nconnections = {count}\n'
                       for i, (port, count) in enumerate(split(n, ports)) if count)

    def __init__(self, n, ports, tmp):
        self.n = n
        cfg = Path(tmp) / f"{type(self).__name__}-{n}.toml"
        cfg.write_text(f'[defaults]\nping_interval = "{INTERVAL}s"\npong_timeout = "{PONG_TIMEOUT}s"\n'
                       + self.extra_config + self.targets_toml(n, ports))
        self.rtt_file = Path(tmp) / f"{type(self).__name__}-{n}.rtt"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*self.launcher, str(SOCKPULSE), "run", "--config", str(cfg), "--web.listen-address", "127.0.0.1:0",
             "--rtt-log", str(self.rtt_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, pass_fds=self.keep_fds,
            env=dict(os.environ, RUST_LOG=self.log_filter),
        )
        line = self.proc.stderr.readline()
        while "listening on http://" not in line:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("sockpulse did not start")
        self.addr = line.split("http://")[1].split()[0]
        subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=subprocess.DEVNULL)

    def open_sessions(self):
        text = http_get(self.addr, "/metrics", timeout=5 * self.slowed)
        return sum(float(m) for m in re.findall(r'^sockpulse_sessions\{state="open",target="[^"]+"\} (\S+)', text, re.M))

    def wait_all_open(self):
        wait_for(lambda: self.open_sessions() >= self.n, 300 * self.slowed, f"{self.n} sockpulse sessions",
                 every=0.05 * self.slowed)
        return time.monotonic() - self.started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30 * self.slowed)
        # `unix_ms target rtt_us read_delay_us`: the last is how long the pong
        # waited in the kernel before sockpulse read it (its loop's stalls).
        samples = []
        for line in self.rtt_file.read_text().splitlines():
            f = line.split()
            samples.append((int(f[0]), int(f[2]), int(f[3]) if len(f) > 3 and f[3].isdigit() else None))
        return samples


class PythonRun:
    name = "python asyncio + websockets"
    flags = []

    def __init__(self, n, ports, tmp):
        self.n = n
        self.rtt_file = Path(tmp) / f"py-{n}.rtt"
        specs = [f"ws://127.0.0.1:{port}/:{count}" for port, count in split(n, ports) if count]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(PYTHON), str(ROOT / "benches/py_monitor.py"), *self.flags, str(self.rtt_file), str(INTERVAL),
             str(PONG_TIMEOUT), *specs],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    def wait_all_open(self):
        line = wait_for(lambda: self.proc.stdout.readline(), 300, f"{self.n} python sessions")
        if not line.startswith("ALL_OPEN"):
            raise RuntimeError(f"python monitor: {line!r}")
        return time.monotonic() - self.started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return [tuple(map(int, l.split())) for l in self.rtt_file.read_text().splitlines()]


class PythonSpreadRun(PythonRun):
    """The same monitor with sockpulse's probe schedule: pings spread over the interval."""
    name = "python, pings spread like sockpulse"
    flags = ["--spread"]


class FloorRun(PythonRun):
    """benches/floor.c: only the unavoidable work of the same probes (one send
    per ping, one recv per readable socket, one wake per 25 ms grid), the
    floor the session loop is measured against."""
    name = "C epoll floor"
    binary = ROOT / "target/bench-floor"
    touch_lines = 0  # FLOOR_TOUCH_LINES: a working set read at every wake
    touch_pages = 0  # FLOOR_TOUCH_PAGES: the pages it spans (0: a page per line)
    launcher = []
    keep_fds = ()

    @classmethod
    def build(cls):
        if not cls.binary.exists() or cls.binary.stat().st_mtime < (ROOT / "benches/floor.c").stat().st_mtime:
            subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(cls.binary), str(ROOT / "benches/floor.c")],
                           check=True)
        return cls.binary

    def __init__(self, n, ports, tmp):
        self.build()
        self.n = n
        self.rtt_file = Path(tmp) / f"floor-{n}.rtt"
        specs = [f"ws://127.0.0.1:{port}/:{count}" for port, count in split(n, ports) if count]
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*self.launcher, str(self.binary), str(self.rtt_file), str(INTERVAL),
                                      str(PONG_TIMEOUT), *specs],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     pass_fds=self.keep_fds,
                                     env=dict(os.environ, FLOOR_TOUCH_LINES=str(self.touch_lines),
                                              FLOOR_TOUCH_PAGES=str(self.touch_pages or self.touch_lines)))


def fill_table(sockets):
    """Helper processes holding `sockets` loopback sockets in the table."""
    procs, left = [], sockets // 2
    while left > 0:
        pairs = min(left, 9000)
        p = subprocess.Popen([str(PYTHON), str(ROOT / "benches/fill_table.py"), str(pairs)],
                             stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "READY":
            raise RuntimeError("fill_table helper failed (raise ulimit -n?)")
        procs.append(p)
        left -= pairs
    return procs


def scan_impact(ports, tmp, n, window, table):
    """Sockpulse RTT with the host scan off, then scanning a big table every second."""
    fillers = fill_table(table)
    rows = []
    try:
        for label, extra in (
            ("scan off", '[kernel]\nscan_interval = "off"\n'),
            ("netlink scan every 1 s", '[kernel]\nscan_interval = "1s"\nmethod = "netlink"\n'),
            ("/proc scan every 1 s", '[kernel]\nscan_interval = "1s"\nmethod = "procfs"\n'),
        ):
            cls = type("Run", (SockpulseRun,), {"extra_config": extra})
            rss, t_open, (cpu, _), rtts, _ = measure(cls, n, ports, tmp, window)
            row = {"mode": label, "cpu_share": cpu, "samples": len(rtts),
                   "p50_ms": percentile(rtts, 0.5) / 1e3, "p99_ms": percentile(rtts, 0.99) / 1e3,
                   "max_ms": (rtts[-1] if rtts else float("nan")) / 1e3}
            log(json.dumps(row))
            rows.append(row)
    finally:
        for f in fillers:
            f.terminate()
    lines = [f"{n} sessions, ~{table} extra sockets in the host table:", "",
             "| host scan | sockpulse CPU | RTT p50 | RTT p99 | RTT max | samples |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {100 * r['cpu_share']:.2f}% | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | "
                     f"{r['max_ms']:.3f} ms | {r['samples']} |")
    return "\n".join(lines) + "\n"


def thread_cpu_seconds(pid):
    """CPU seconds so far by thread name: the session loop is the main
    thread (`sockpulse`), the host scan `sockpulse-kernel` (`sockpulse-kerne`:
    the kernel keeps 15 characters of a name)."""
    out = {}
    for name, seconds in thread_runtimes(pid):
        out[name] = out.get(name, 0.0) + seconds
    return out


def scan_share(args, tmp):
    """The host scan's CPU against the session loop's, per thread of one
    agent, at N sessions with the default 5 s scan: filtered (the default)
    and full netlink dumps, each on fresh servers."""
    n = int(args.sessions.split(",")[-1])
    rows = []
    for label, extra in (("filtered (default)", '[kernel]\nscan_interval = "5s"\n'),
                         ("full netlink dump", '[kernel]\nscan_interval = "5s"\nmethod = "netlink"\n')):
        servers, ports = start_servers(args.servers, args.server)
        cls = type("Run", (SockpulseRun,), {"extra_config": extra})
        run = cls(n, ports, tmp)
        try:
            run.wait_all_open()
            time.sleep(INTERVAL + 2)
            before, w0 = thread_cpu_seconds(run.proc.pid), time.time()
            time.sleep(args.window)
            after, w1 = thread_cpu_seconds(run.proc.pid), time.time()
        finally:
            run.proc.kill()
            run.proc.wait()
            for s in servers:
                s.terminate()
                s.wait()
        wall = w1 - w0
        share = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / wall for k in after}
        row = {"mode": label, "loop": share.get("sockpulse", 0.0), "scan": share.get("sockpulse-kerne", 0.0),
               "total": sum(share.values())}
        log(json.dumps(row))
        rows.append(row)
    lines = [f"{n} sessions ({2 * n} sockets of the agent and its servers in the table), host scan every 5 s, "
             f"{args.window} s window:", "",
             "| host scan | session loop thread | scan thread | scan / loop | whole agent |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {100 * r['loop']:.3f}% | {100 * r['scan']:.3f}% | "
                     f"{r['scan'] / max(r['loop'], 1e-9):.3f} | {100 * r['total']:.3f}% |")
    return "\n".join(lines) + "\n"


def listen_overflows():
    """TcpExt ListenOverflows: connections a full accept queue turned away."""
    lines = [l.split() for l in Path("/proc/net/netstat").read_text().splitlines() if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))["ListenOverflows"])


def node_server(port):
    env = dict(os.environ, NODE_PATH=str(PEERS / "node/node_modules"))
    p = subprocess.Popen(["node", str(ROOT / "tests/peers/ws_server.js"), str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    m = re.match(r"LISTENING (\d+)", p.stdout.readline())
    if not m:
        raise RuntimeError("node server did not start")
    subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
    return p, int(m.group(1))


def open_curve(run, n, since, timeout):
    """(seconds since `since`, open sessions) every 100 ms until all `n` are open."""
    curve = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        o = run.open_sessions()
        curve.append((time.monotonic() - since, o))
        if o >= n:
            return curve
        time.sleep(0.1)
    raise RuntimeError(f"not all {n} sessions back within {timeout} s: {curve[-1]}")


def connect_storms(args, tmp):
    """N sessions opening at once, then every server restarting at once:
    how fast they open, how the reconnects spread, and whether any server's
    accept queue overflowed (ListenOverflows, host-wide)."""
    n = int(args.sessions.split(",")[-1])
    servers = [node_server(0) for _ in range(args.servers)]
    ports = [p for _, p in servers]
    lines = []
    try:
        overflows = listen_overflows()
        run = SockpulseRun(n, ports, tmp)
        opened = open_curve(run, n, run.started, 120)
        t_open = opened[-1][0]
        lines.append(f"{n} sessions to {args.servers} Node ws servers (backlog 4096 each):")
        lines.append("")
        lines.append(f"- Start: all open in {t_open:.2f} s from the agent's start, **{n / t_open:.0f} sessions/s**; "
                     f"ListenOverflows {listen_overflows() - overflows:+d}.")
        time.sleep(INTERVAL + 2)
        overflows = listen_overflows()
        for p, _ in servers:
            p.kill()
            p.wait()
        restarted = time.monotonic()
        servers = [node_server(port) for port in ports]
        bench_wait = time.monotonic() - restarted
        wait_for(lambda: run.open_sessions() < n, 10, "the sessions to notice")
        curve = open_curve(run, n, restarted, 120)
        lines.append(f"- Every server killed and restarted at once (back listening {bench_wait:.2f} s after the "
                     f"kill): all {n} sessions open again {curve[-1][0]:.2f} s after the kill; ListenOverflows "
                     f"{listen_overflows() - overflows:+d}.")
        lines.append("")
        lines.append("| seconds after the kill | sessions open |")
        lines.append("|---|---|")
        step, last = 0.0, None
        for t, o in curve:
            if t >= step or o >= n:
                lines.append(f"| {t:.1f} | {o:.0f} |")
                step = t + 0.25
                last = o
        if last is not None and last < n:
            lines.append(f"| {curve[-1][0]:.1f} | {curve[-1][1]:.0f} |")
        run.stop()
    finally:
        for p, _ in servers:
            p.kill()
    return "\n".join(lines) + "\n"


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p * (len(sorted_vals) - 1) + 0.5))]


def measure(cls, n, ports, tmp, window):
    """Returns (rss_kib, time_to_open, (cpu_share, kernel_share), rtts_in_window_us, read_delays_us)."""
    run = cls(n, ports, tmp)
    try:
        t_open = run.wait_all_open()
        if PIN["monitor"]:
            pin(run.proc.pid, PIN["monitor"])
        # Let the connect storm's first pings finish before the steady window.
        time.sleep(INTERVAL + 2)
        cpu0, w0 = cpu_sample(run.proc.pid), time.time()
        time.sleep(window)
        cpu1, w1 = cpu_sample(run.proc.pid), time.time()
        rss = rss_kib(run.proc.pid)
    except BaseException:
        run.proc.kill()  # a failed measurement leaves no monitor behind
        raise
    samples = [s for s in run.stop() if w0 * 1000 <= s[0] <= w1 * 1000]
    rtts = sorted(s[1] for s in samples)
    delays = sorted(s[2] for s in samples if len(s) > 2 and s[2] is not None)
    return rss, t_open, window_cpu(cpu0, cpu1, w1 - w0), rtts, delays


def scheduler_totals(pid):
    """(CPU nanoseconds, scheduler runs) so far, summed over `pid`'s threads."""
    ns = runs = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
            ns, runs = ns + int(fields[0]), runs + int(fields[2])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return ns, runs


def same_windows(order, n, args, tmp):
    """Runs the monitors in `order` at the same time, each on fresh servers
    of its own: monitors on CPU 0, servers on CPU 1. Returns, per window,
    each monitor's (CPU nanoseconds, scheduler runs)."""
    runs, servers = {}, []
    try:
        for cls in order:
            procs, ports = start_server_processes(args.servers, args.server)
            servers += procs
            for p in procs:
                pin(p.pid, {1})
            runs[cls] = cls(n, ports, tmp)
            runs[cls].wait_all_open()
            pin(runs[cls].proc.pid, {0})
        time.sleep(INTERVAL + 2)
        windows = []
        for _ in range(args.windows):
            before = {cls: scheduler_totals(r.proc.pid) for cls, r in runs.items()}
            time.sleep(args.window)
            after = {cls: scheduler_totals(r.proc.pid) for cls, r in runs.items()}
            windows.append({cls: (after[cls][0] - before[cls][0], after[cls][1] - before[cls][1])
                            for cls in runs})
        return windows
    finally:
        for r in runs.values():
            try:
                r.stop()
            except Exception:
                r.proc.kill()
        for p in servers:
            p.terminate()
            p.wait()


def per_wake_us(windows, cls):
    return sum(w[cls][0] for w in windows) / max(1, sum(w[cls][1] for w in windows)) / 1e3


def paired_floor(args, tmp):
    """sockpulse and the C floor at the same time (`same_windows`).
    Sequential measurements of one program drift by up to ±30 % between
    minutes on this VM at 1k sessions; paired windows see the same drift.
    Which of the two starts first alternates by round."""
    lines = ["| sessions | round | sockpulse CPU | floor CPU | ratio | per window (min–max) "
             "| CPU per wake-up (sockpulse / floor) |", "|---|---|---|---|---|---|---|"]
    counts = [int(x) for x in args.sessions.split(",")]
    for rnd in range(args.repeat):
        for n in counts:
            order = [SockpulseRun, FloorRun] if rnd % 2 == 0 else [FloorRun, SockpulseRun]
            windows = same_windows(order, n, args, tmp)
            sp = sum(w[SockpulseRun][0] for w in windows)
            fl = sum(w[FloorRun][0] for w in windows)
            ratios = [w[SockpulseRun][0] / max(w[FloorRun][0], 1) for w in windows]
            wall = args.window * args.windows
            row = (f"| {n} | {rnd + 1} | {100 * sp / wall / 1e9:.3f}% | {100 * fl / wall / 1e9:.3f}% | "
                   f"{sp / max(fl, 1):.2f}× | {min(ratios):.2f}–{max(ratios):.2f}× | "
                   f"{per_wake_us(windows, SockpulseRun):.1f} / {per_wake_us(windows, FloorRun):.1f} µs |")
            log(row)
            lines.append(row)
    return "\n".join(lines)


def footprint_floor(spec):
    """The floor class for one --footprint entry: LINES (each in a page of
    its own) or LINES@PAGES (packed into PAGES pages)."""
    lines, _, pages = spec.partition("@")
    lines, pages = int(lines), int(pages or lines)
    name = "C epoll floor" + (f" + {lines} lines in {pages} pages" if lines else "")
    return type(f"Floor{lines}at{pages}", (FloorRun,), {"touch_lines": lines, "touch_pages": pages, "name": name})


def footprint(args, tmp):
    """What a working set costs per wake-up: sockpulse and the floor reading
    a chain of cache lines at every wake, all at the same time
    (`same_windows`), at the first --sessions count; which starts first
    rotates by round. sockpulse's user-space work per wake-up is a few
    thousand instructions, yet it costs tens of µs: on this VM every wake-up
    starts with cold caches and TLB, and a page costs more than a line."""
    n = int(args.sessions.split(",")[0])
    monitors = [SockpulseRun] + [footprint_floor(x) for x in args.footprint.split(",")]
    windows = []
    for rnd in range(args.repeat):
        k = rnd % len(monitors)
        windows += same_windows(monitors[k:] + monitors[:k], n, args, tmp)
    wall = args.window * len(windows)
    lines = [f"{n} sessions, {args.repeat} rounds of {args.windows} windows of {args.window} s, all monitors "
             "at the same time on CPU 0, servers on CPU 1:",
             "", "| monitor | CPU (one core) | wake-ups/s | CPU per wake-up |", "|---|---|---|---|"]
    for cls in monitors:
        ns, runs = sum(w[cls][0] for w in windows), sum(w[cls][1] for w in windows)
        lines.append(f"| {cls.name} | {100 * ns / wall / 1e9:.3f}% | {runs / wall:.1f} | {per_wake_us(windows, cls):.1f} µs |")
    log("\n".join(lines))
    return "\n".join(lines)


# Where valgrind loads a position-independent main executable on amd64.
VALGRIND_LOAD_BASE = 0x108000


def wait_call_address(cls):
    """The address, in the binary, of the call into the wait that ends each
    wake-up: sockpulse's `Poll::poll`, the floor's `epoll_wait` stub."""
    if cls is FloorRun:
        listing = subprocess.run(["objdump", "-d", str(FloorRun.build())], capture_output=True, text=True,
                                 check=True).stdout
        found = re.search(r"^([0-9a-f]+) <epoll_wait@plt>:", listing, re.M)
    else:
        symbols = subprocess.run(["nm", "-C", str(SOCKPULSE)], capture_output=True, text=True, check=True).stdout
        found = re.search(r"^([0-9a-f]+) [Tt] mio::poll::Poll::poll$", symbols, re.M)
    if not found:
        raise RuntimeError(f"{cls.name}: no wait call found in the binary")
    return int(found.group(1), 16)


def wake_pages(args, tmp):
    """The distinct pages and lines of code and data one wake-up touches,
    sockpulse's and the floor's, at the first --sessions count: each runs
    under valgrind's lackey, whose memory trace benches/wake_pages.c cuts
    at every call into the wait. Medians over the wake-ups of a steady
    window (the trace slows the program down, never what it touches)."""
    if not shutil.which("valgrind"):
        raise SystemExit("--pages needs valgrind (apt-get install valgrind)")
    counter = ROOT / "target/bench-wake-pages"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(counter), str(ROOT / "benches/wake_pages.c")],
                   check=True)
    n = int(args.sessions.split(",")[0])
    lines = [f"{n} sessions, per wake-up (median of the wake-ups in {args.window} s):", "",
             "| program | code pages | code lines | data pages | data lines |", "|---|---|---|---|---|"]
    for cls in (SockpulseRun, FloorRun):
        marker = VALGRIND_LOAD_BASE + wait_call_address(cls)
        counts = Path(tmp) / f"wake-pages-{cls.__name__}.txt"
        servers, ports = start_server_processes(args.servers, args.server)
        run = None
        with open(counts, "w") as out:
            count = subprocess.Popen([str(counter), f"{marker:x}"], stdin=subprocess.PIPE, stdout=out)
        trace_fd = count.stdin.fileno()
        traced = type(f"Traced{cls.__name__}", (cls,), {
            "launcher": ["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-fd={trace_fd}"],
            "keep_fds": (trace_fd,), "slowed": 50})
        try:
            run = traced(n, ports, tmp)
            run.wait_all_open()
            time.sleep(INTERVAL + 2)
            skip = len(counts.read_text().splitlines())
            time.sleep(args.window)
            steady = counts.read_text().splitlines()[skip:]
        finally:
            if run:
                run.stop()
            count.stdin.close()
            count.wait()
            for p in servers:
                p.terminate()
                p.wait()
        if len(steady) < 10:
            raise RuntimeError(f"{cls.name}: only {len(steady)} wake-ups traced")
        # The file is read while the counter writes: its last line may be cut.
        columns = list(zip(*[[int(x) for x in row.split()[1:]] for row in steady if len(row.split()) == 5]))
        medians = [sorted(c)[len(c) // 2] for c in columns]
        row = f"| {cls.name} | " + " | ".join(str(m) for m in medians) + " |"
        log(row)
        lines.append(row)
    return "\n".join(lines)


def measure_on_fresh_servers(cls, n, args, tmp, window):
    """`measure` against servers started for this measurement alone. A
    server that has been through earlier connect storms is not the same
    server: against Node servers the same sockpulse build used 1.85 % of a
    core at 9k sessions on fresh ones and 2.50 % after three storms."""
    servers, ports = start_servers(args.servers, args.server)
    try:
        return measure(cls, n, ports, tmp, window)
    finally:
        for s in servers:
            s.terminate()
            s.wait()


def loopback_floor():
    out = {}
    for label, prefix in (("same CPU", ["taskset", "-c", "0"]), ("across CPUs", [])):
        r = subprocess.run(prefix + ["cargo", "bench", "-q", "--bench", "loopback"], cwd=ROOT,
                           capture_output=True, text=True, check=True)
        out[label] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1000,9000")
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the table shows each round's rows")
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--server", choices=["node", "websocat"], default="node",
                    help="echo server: Node ws (default) or websocat (Rust, no GC)")
    ap.add_argument("--out", default=str(ROOT / "target/bench-results.md"))
    ap.add_argument("--only", choices=["sockpulse", "python", "floor"], help="run one monitor (for quick iteration)")
    ap.add_argument("--pin", action="store_true",
                    help="steady windows with the monitor on CPU 0 and the servers on CPU 1")
    ap.add_argument("--floor", action="store_true",
                    help="sockpulse, the C epoll floor (benches/floor.c) and the spread Python monitor")
    ap.add_argument("--paired", action="store_true",
                    help="instead: sockpulse and the C floor at the same time, CPU over the same windows")
    ap.add_argument("--windows", type=int, default=6, help="--paired: windows per measurement")
    ap.add_argument("--footprint", metavar="LINES[@PAGES],...",
                    help="instead: the floor reading LINES cold cache lines per wake (each in its own page, or "
                         "packed into PAGES pages), e.g. 0,300,300@6, at the same time as sockpulse")
    ap.add_argument("--pages", action="store_true",
                    help="instead: the pages and lines one wake-up touches, sockpulse's and the floor's (valgrind)")
    ap.add_argument("--scan-impact", type=int, metavar="SOCKETS",
                    help="instead: sockpulse RTT with the host scan off vs on over a table of this many sockets")
    ap.add_argument("--scan-share", action="store_true",
                    help="instead: the host scan thread's CPU against the session loop's (last --sessions count)")
    ap.add_argument("--storm", action="store_true",
                    help="instead: connect storms at the last --sessions count (start, every server restarting)")
    args = ap.parse_args()
    if args.pin:
        PIN.update(monitor={0}, servers={1})
    # The modes that each write one report of their own.
    for chosen, mode, report in [(args.storm, connect_storms, "storms"), (args.pages, wake_pages, "pages"),
                                 (args.footprint, footprint, "footprint"), (args.paired, paired_floor, "paired"),
                                 (args.scan_share, scan_share, "scan-share")]:
        if chosen:
            with tempfile.TemporaryDirectory() as tmp:
                write_report([mode(args, tmp)], str(ROOT / f"target/bench-{report}.md"))
            return
    if args.scan_impact:
        servers, ports = start_servers(args.servers, args.server)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                report = scan_impact(ports, tmp, int(args.sessions.split(",")[0]), args.window, args.scan_impact)
        finally:
            for s in servers:
                s.terminate()
        print(report)
        return
    counts = [int(x) for x in args.sessions.split(",")]

    floor = loopback_floor()
    log(f"loopback floor: {floor}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        default = [SockpulseRun, FloorRun, PythonSpreadRun] if args.floor else [SockpulseRun, PythonRun, PythonSpreadRun]
        monitors = {"sockpulse": [SockpulseRun], "python": [PythonRun, PythonSpreadRun], "floor": [FloorRun]}.get(
            args.only, default)
        bases = {}
        for cls in monitors:
            bases[cls] = measure_on_fresh_servers(cls, 1, args, tmp, 3)[0]
            log(f"{cls.name}: 1-session RSS {bases[cls]} KiB")
        # Rounds interleave the monitors, so a slow spell of the machine
        # hits all of them, and the per-round CPU ratios show the spread.
        for rnd in range(args.repeat):
            for n in counts:
                for cls in monitors:
                    base = bases[cls]
                    rss, t_open, (cpu, kernel), rtts, delays = measure_on_fresh_servers(
                        cls, n, args, tmp, args.window)
                    row = {
                        "monitor": cls.name, "sessions": n, "round": rnd,
                        "rss_per_session_kib": (rss - base) / (n - 1),
                        "cpu_share": cpu, "kernel_share": kernel, "open_s": t_open, "samples": len(rtts),
                        "p50_ms": percentile(rtts, 0.5) / 1e3, "p99_ms": percentile(rtts, 0.99) / 1e3,
                        "max_ms": (rtts[-1] if rtts else float("nan")) / 1e3,
                        "read_delay_p50_ms": percentile(delays, 0.5) / 1e3 if delays else None,
                        "read_delay_p99_ms": percentile(delays, 0.99) / 1e3 if delays else None,
                        "read_delay_max_ms": delays[-1] / 1e3 if delays else None,
                    }
                    log(json.dumps(row))
                    rows.append(row)

    lines = [
        f"Loopback 1-byte TCP round trip (floor): same CPU p50 {floor['same CPU']['p50_us']} µs, "
        f"across CPUs p50 {floor['across CPUs']['p50_us']} µs."
        + (" Steady windows pinned: monitor on CPU 0, servers on CPU 1." if args.pin else ""),
        "",
        "| monitor | sessions | RSS/session | CPU (one core) | of it kernel | time to open all | RTT p50 | RTT p99 "
        "| RTT max | samples |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['monitor']} | {r['sessions']} | {r['rss_per_session_kib']:.2f} KiB | {100 * r['cpu_share']:.2f}% | "
            f"{100 * r['kernel_share']:.2f}% | {r['open_s']:.2f} s | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['max_ms']:.3f} ms | {r['samples']} |"
        )
    lines.append("")
    for r in rows:
        if r.get("read_delay_p50_ms") is not None:
            lines.append(
                f"sockpulse at {r['sessions']} sessions: pongs waited in the kernel before the loop read them "
                f"p50 {r['read_delay_p50_ms']:.3f} ms, p99 {r['read_delay_p99_ms']:.3f} ms, "
                f"max {r['read_delay_max_ms']:.3f} ms (the loop's deliberate wait of up to one timer-grid period, "
                f"plus any stall; RTTs exclude this wait)."
            )
    lines.append("")
    for rnd in range(args.repeat) if not args.only else []:
        for n in counts:
            sp = next(r for r in rows if r["monitor"] == "sockpulse" and r["sessions"] == n and r["round"] == rnd)
            for fl in (r for r in rows if r["monitor"] == FloorRun.name and r["sessions"] == n and r["round"] == rnd):
                lines.append(
                    f"Round {rnd + 1}, {n} sessions: sockpulse's CPU is {sp['cpu_share'] / max(fl['cpu_share'], 1e-9):.2f}x "
                    f"the C epoll floor's ({100 * sp['cpu_share']:.2f}% vs {100 * fl['cpu_share']:.2f}%), its memory "
                    f"{sp['rss_per_session_kib']:.2f} vs {fl['rss_per_session_kib']:.2f} KiB per session."
                )
            for py in (r for r in rows if r["monitor"] not in ("sockpulse", FloorRun.name) and r["sessions"] == n
                       and r["round"] == rnd):
                lines.append(
                    f"Round {rnd + 1}, {n} sessions, against {py['monitor']}: "
                    f"{py['rss_per_session_kib'] / sp['rss_per_session_kib']:.1f}x less memory per session, "
                    f"{py['cpu_share'] / max(sp['cpu_share'], 1e-9):.1f}x less CPU, "
                    f"RTT max {sp['max_ms']:.2f} ms vs {py['max_ms']:.2f} ms."
                )
    write_report(lines, args.out)


def write_report(lines, out):
    """Prints the report and keeps it in `out`."""
    report = "\n".join(lines) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
