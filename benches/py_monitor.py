"""The baseline: an idiomatic Python asyncio liveness monitor on `websockets`.

What a user would write instead of sockpulse: N sessions, one ping each per
interval, a pong deadline, reconnect with jittered backoff. Prints
`ALL_OPEN <seconds>` once every session is open; on SIGTERM writes each RTT
sample as `unix_ms rtt_us` to the file given and exits.

With --spread, each session's second ping comes after a random 50-100 % of
the interval, as sockpulse does, so pings trickle instead of arriving in
one burst per interval (the same probe schedule as sockpulse's).

usage: py_monitor.py [--spread] RTT_FILE INTERVAL_S PONG_TIMEOUT_S URL:COUNT [URL:COUNT ...]
"""
import asyncio
import random
import signal
import sys
import time

from websockets.asyncio.client import connect


class Stats:
    def __init__(self, total):
        self.total = total
        self.open = 0
        self.all_open_reported = False
        self.started = time.monotonic()
        self.samples = []  # (unix_ms, rtt_us)


async def session(url, interval, pong_timeout, stats, spread):
    backoff = 0.5
    while True:
        try:
            async with connect(url, ping_interval=None, open_timeout=5) as ws:
                stats.open += 1
                backoff = 0.5
                if stats.open == stats.total and not stats.all_open_reported:
                    stats.all_open_reported = True
                    print(f"ALL_OPEN {time.monotonic() - stats.started:.3f}", flush=True)
                first = True
                try:
                    while True:
                        sent = time.monotonic()
                        pong = await ws.ping()
                        await asyncio.wait_for(pong, pong_timeout)
                        rtt = time.monotonic() - sent
                        stats.samples.append((int(time.time() * 1000), int(rtt * 1e6)))
                        period = interval * random.uniform(0.5, 1.0) if spread and first else interval
                        first = False
                        await asyncio.sleep(max(0.0, period - (time.monotonic() - sent)))
                finally:
                    stats.open -= 1
        except asyncio.CancelledError:
            raise
        except Exception:
            pass
        await asyncio.sleep(random.uniform(backoff, 2 * backoff))
        backoff = min(backoff * 2, 30.0)


async def main():
    args = sys.argv[1:]
    spread = args[:1] == ["--spread"]
    if spread:
        args = args[1:]
    rtt_file, interval, pong_timeout = args[0], float(args[1]), float(args[2])
    targets = []
    for spec in args[3:]:
        url, count = spec.rsplit(":", 1)
        targets += [url] * int(count)
    stats = Stats(len(targets))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(session(u, interval, pong_timeout, stats, spread)) for u in targets]
    await stop.wait()
    for t in tasks:
        t.cancel()
    with open(rtt_file, "w") as f:
        for ts, rtt in stats.samples:
            f.write(f"{ts} {rtt}\n")


asyncio.run(main())
