"""The baseline for MQTT over WebSocket: what a user would write in Python
to hold many MQTT sessions in one process, `aiomqtt` (asyncio on top of
`paho-mqtt`) with keep-alive 20 s (PINGREQ by the library). paho's own
network-loop threads cannot: they wait in `select()`, which fails past
descriptor 1024 (three per client), about 330 clients. Prints
`ALL_OPEN <seconds>` once every client is connected; exits on SIGTERM. The
benchmark compares memory and CPU.

usage: py_mqtt_monitor.py HOST PORT PATH COUNT USER PASSWORD
"""
import asyncio
import signal
import sys
import time

import aiomqtt


async def hold(i, args, opened, total, started, stop):
    host, port, path, user, password = args
    while not stop.is_set():
        try:
            async with aiomqtt.Client(host, port, username=user, password=password, identifier=f"py-{i}",
                                      transport="websockets", websocket_path=path, keepalive=20, timeout=60):
                opened[0] += 1
                if opened[0] == total:
                    print(f"ALL_OPEN {time.monotonic() - started:.2f}", flush=True)
                await stop.wait()
        except aiomqtt.MqttError:
            await asyncio.sleep(1)  # reconnect, as a monitor would


async def main():
    host, port, path, count, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
        sys.argv[5], sys.argv[6]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    started, opened = time.monotonic(), [0]
    await asyncio.gather(*(hold(i, (host, port, path, user, password), opened, count, started, stop)
                           for i in range(count)))


asyncio.run(main())
