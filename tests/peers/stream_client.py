"""A client of the agent's /api/v1/stream on the Python `websockets` library,
for sockpulse's tests.

Modes:
- `read` (default): prints `OPEN <subprotocol>`, then `MSG <json>` per
  message, and `CLOSED <code>` at the end; `REFUSED <status>` if the upgrade
  is refused.
- `idle N`: holds N connections that read everything and print nothing but
  `OPEN N` once all are open, `REFUSED <status>` for any refused, and
  `LOST <count>` if any close before the process is stopped.
- `stall`: connects with a 4 KiB receive buffer, prints `OPEN`, and never
  reads again.
- `big`: sends one 64 KiB message, prints `CLOSED <code>` when dropped.
- `flood`: sends pings as fast as it can for 5 s, prints `FLOODED <count>`.
"""
import argparse
import asyncio
import socket
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def say(line):
    print(line, flush=True)


async def read(args):
    try:
        async with connect(args.url, subprotocols=args.subprotocol or None, origin=args.origin,
                           max_size=None) as ws:
            say(f"OPEN {ws.subprotocol}")
            try:
                async for message in ws:
                    say(f"MSG {message}")
            except ConnectionClosed:
                pass
            say(f"CLOSED {ws.close_code}")
    except InvalidStatus as e:
        say(f"REFUSED {e.response.status_code}")


async def idle(args):
    lost = 0

    async def hold(ws):
        nonlocal lost
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        lost += 1
        say(f"LOST {lost}")

    conns = []
    for _ in range(args.n):
        try:
            conns.append(await connect(args.url, subprotocols=["sockpulse.v1"], max_size=None))
        except InvalidStatus as e:
            say(f"REFUSED {e.response.status_code}")
    say(f"OPEN {len(conns)}")
    await asyncio.gather(*(hold(ws) for ws in conns))


async def stall(args):
    host, port = args.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    ws = await connect(args.url, sock=sock, subprotocols=["sockpulse.v1"], max_size=None)
    # Stop reading: the transport no longer drains the socket.
    ws.transport.pause_reading()
    say("OPEN")
    await asyncio.sleep(3600)


async def big(args):
    async with connect(args.url, subprotocols=["sockpulse.v1"], max_size=None) as ws:
        say("OPEN")
        await ws.send("x" * 65536)
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        say(f"CLOSED {ws.close_code}")


async def flood(args):
    async with connect(args.url, subprotocols=["sockpulse.v1"], max_size=None) as ws:
        say("OPEN")
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        count = 0
        while loop.time() < end:
            await ws.ping(count.to_bytes(8, "big") + b"x" * 92)
            count += 1
            if count % 100 == 0:
                await asyncio.sleep(0)
        say(f"FLOODED {count}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("mode", nargs="?", default="read", choices=["read", "idle", "stall", "big", "flood"])
    p.add_argument("n", nargs="?", type=int, default=1)
    p.add_argument("--subprotocol", action="append", default=[])
    p.add_argument("--origin")
    args = p.parse_args()
    asyncio.run({"read": read, "idle": idle, "stall": stall, "big": big, "flood": flood}[args.mode](args))


if __name__ == "__main__":
    sys.exit(main())
