// WebSocket echo server on Node's `ws` library, for sockpulse's tests.
// Prints `LISTENING <port>` and `CLOSED <code>` like ws_server.py.
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 0);
// A deep backlog so connect storms in benchmarks are not throttled by the server.
const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096 });
wss.on('listening', () => console.log(`LISTENING ${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code) => console.log(`CLOSED ${code}`));
});
