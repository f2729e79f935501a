"""Makes known TCP states on one port and holds them, for table tests.

On HOST:PORT: one LISTEN socket with backlog 1 and a full accept queue,
ESTABLISHED pairs, one CLOSE_WAIT, one TIME_WAIT, and clients whose SYNs
the full queue drops (SYN_SENT). With a third argument N, also N
ESTABLISHED pairs on another port (the bulk of a host's table, which a
filtered scan counts without listing). Prints READY, holds them until killed.
"""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
bulk = int(sys.argv[3]) if len(sys.argv) > 3 else 0
keep = []

if bulk:
    other = socket.socket()
    other.bind((host, 0))
    other.listen(bulk)
    for _ in range(bulk):
        keep.append(socket.create_connection(other.getsockname()))
        keep.append(other.accept()[0])
    keep.append(other)

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(8)


def pair():
    c = socket.create_connection((host, port))
    s, _ = ls.accept()
    return c, s


a, sa = pair()
keep += [a, sa]
b, sb = pair()
b.close()  # sb: CLOSE_WAIT
keep.append(sb)
c, sc = pair()
c.close()
time.sleep(0.05)
sc.close()  # c: TIME_WAIT
# Shrink the backlog, then overfill it: the extra SYNs are dropped.
ls.listen(1)
for _ in range(4):
    q = socket.socket()
    q.setblocking(False)
    try:
        q.connect((host, port))
    except BlockingIOError:
        pass
    keep.append(q)
time.sleep(0.3)
print("READY", flush=True)
time.sleep(300)  # the test kills us when done; this bounds a forgotten run
