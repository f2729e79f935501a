"""Holds N loopback TCP connections (both ends: 2N sockets) until killed.

Fills the host TCP table for scan benchmarks. Prints READY when done.
usage: fill_table.py PAIRS   (at most ~9,900: two fds per pair, 20k per process)
"""
import socket
import sys
import time

pairs = int(sys.argv[1])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4096)
addr = ls.getsockname()
keep = []
for _ in range(pairs):
    c = socket.create_connection(addr)
    s, _ = ls.accept()
    keep += [c, s]
print("READY", flush=True)
time.sleep(3600)
