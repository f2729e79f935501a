"""The baseline for MQTT over WebSocket: what a user would write with
`paho-mqtt`, N clients with the library's network loop each (`loop_start`),
keep-alive 20 s (PINGREQ by the library). Prints `ALL_OPEN <seconds>` once
every client is connected; exits on SIGTERM. The benchmark compares memory
and CPU.

usage: py_mqtt_monitor.py HOST PORT PATH COUNT USER PASSWORD
"""
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, path, count, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
started = time.monotonic()
lock = threading.Lock()
opened = [0]


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code == 0:
        with lock:
            opened[0] += 1
            if opened[0] == count:
                print(f"ALL_OPEN {time.monotonic() - started:.2f}", flush=True)


clients = []
for i in range(count):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"py-{i}", transport="websockets")
    c.ws_set_options(path=path)
    c.username_pw_set(user, password)
    c.on_connect = on_connect
    c.connect_async(host, port, keepalive=20)
    c.loop_start()
    clients.append(c)

done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
for c in clients:
    c.loop_stop()
