"""strawberry-graphql under uvicorn, GraphQL over WebSocket with the
`graphql-transport-ws` subprotocol, for sockpulse's tests: a payload
without {"token": "secret"} is refused. Prints `LISTENING <port>`."""
import asyncio
import socket
import sys

import strawberry
import uvicorn
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL


@strawberry.type
class Query:
    hello: str = "world"


class App(GraphQL):
    async def on_ws_connect(self, context):
        params = context["connection_params"]
        if not isinstance(params, dict) or params.get("token") != "secret":
            raise ConnectionRejectionError({"message": "Not authorized"})
        return await super().on_ws_connect(context)


schema = strawberry.Schema(query=Query)
app = App(schema, subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL])

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
sock = socket.socket()
sock.bind(("127.0.0.1", port))
# Listening before saying so: uvicorn starts serving it a moment later.
sock.listen(128)
print(f"LISTENING {sock.getsockname()[1]}", flush=True)
config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio")
asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
