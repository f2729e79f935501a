"""python-socketio (Engine.IO 4) on aiohttp for sockpulse's tests: heartbeat
2 s + 1 s; namespace /admin wants auth {"token": "secret"}. SIGUSR2 makes
the server disconnect every client. Prints `LISTENING <port>`."""
import asyncio
import signal
import sys

import socketio
from aiohttp import web

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=2, ping_timeout=1, transports=["websocket"])
app = web.Application()
sio.attach(app)
clients = set()


@sio.event
async def connect(sid, environ, auth=None):
    clients.add(("/", sid))


@sio.on("connect", namespace="/admin")
async def admin_connect(sid, environ, auth=None):
    if not auth or auth.get("token") != "secret":
        raise socketio.exceptions.ConnectionRefusedError("Not authorized")
    clients.add(("/admin", sid))


@sio.event
async def disconnect(sid, *args):
    clients.discard(("/", sid))


async def disconnect_all():
    print(f"DISCONNECTING {len(clients)}", flush=True)
    for namespace, sid in list(clients):
        await sio.disconnect(sid, namespace=namespace)
        clients.discard((namespace, sid))


async def main():
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING {bound}", flush=True)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(disconnect_all()))
    await asyncio.Event().wait()


asyncio.run(main())
