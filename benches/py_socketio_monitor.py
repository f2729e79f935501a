"""The baseline for Socket.IO: what a user would write with the
`python-socketio` client, N connections held open (the library answers the
server's heartbeat and reconnects). Prints `ALL_OPEN <seconds>` once every
connection is up; exits on SIGTERM. It measures no RTT (Engine.IO 4 gives a
client none); the benchmark compares memory and CPU.

usage: py_socketio_monitor.py URL:COUNT [URL:COUNT ...]
"""
import asyncio
import signal
import sys
import time

import socketio


async def hold(url, opened, total, started):
    sio = socketio.AsyncClient(reconnection=True)

    @sio.event
    async def connect():
        opened[0] += 1
        if opened[0] == total:
            print(f"ALL_OPEN {time.monotonic() - started:.2f}", flush=True)

    await sio.connect(url, transports=["websocket"], wait_timeout=30)
    await sio.wait()


async def main(specs):
    started = time.monotonic()
    targets = []
    for spec in specs:
        url, count = spec.rsplit(":", 1)
        targets += [url] * int(count)
    opened = [0]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(hold(u, opened, len(targets), started)) for u in targets]
    await stop.wait()
    for t in tasks:
        t.cancel()


asyncio.run(main(sys.argv[1:]))
