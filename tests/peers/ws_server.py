"""WebSocket echo server on the Python `websockets` library, for sockpulse's tests.

Prints `LISTENING <port>` once it accepts connections and `CLOSED <code>`
when a client's connection ends, so tests can check close codes.
"""
import argparse
import asyncio
import random
import ssl
import sys

from websockets.asyncio.server import serve


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reject", type=int, help="answer the upgrade with this HTTP status")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--client-ca", help="require client certificates signed by this CA")
    p.add_argument("--subprotocol", action="append", default=[])
    p.add_argument("--show-header", action="append", default=[], help="print this request header as HEADER name: value")
    p.add_argument("--max-age", type=float, help="cut every connection (TCP close, no close frame) this many seconds after the upgrade, as a load balancer's maximum connection duration does")
    p.add_argument("--random-age", type=float, nargs=2, metavar=("LO", "HI"), help="cut every connection at a random age between LO and HI seconds")
    args = p.parse_args()

    async def handler(ws):
        age = args.max_age
        if args.random_age:
            age = random.uniform(*args.random_age)
        if age:
            asyncio.get_running_loop().call_later(age, ws.transport.close)
        try:
            async for msg in ws:
                await ws.send(msg)
        except Exception:
            pass
        finally:
            print(f"CLOSED {ws.close_code}", flush=True)

    def process_request(connection, request):
        for name in args.show_header:
            print(f"HEADER {name}: {request.headers.get(name)}", flush=True)
        if args.reject:
            return connection.respond(args.reject, "rejected by test server\n")
        return None

    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)

    async def run():
        async with serve(
            handler,
            args.host,
            args.port,
            ping_interval=None,
            process_request=process_request,
            ssl=ctx,
            subprotocols=args.subprotocol or None,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            print(f"LISTENING {port}", flush=True)
            await asyncio.Future()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
