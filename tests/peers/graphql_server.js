// GraphQL over WebSocket (`graphql-transport-ws`) on the `graphql-ws`
// library's own server over Node `ws`, for sockpulse's tests. A
// `connection_init` without payload {"token":"secret"} is refused (close
// 4403); no `connection_init` within 3 s closes 4408 (the library's
// default). SIGUSR2 closes every connection with 4499 Terminated.
// Prints `LISTENING <port>`.
const { WebSocketServer } = require('ws');
const { useServer } = require('graphql-ws/use/ws');
const { buildSchema } = require('graphql');

const port = Number(process.argv[2] || 0);
const schema = buildSchema('type Query { hello: String }');
const wss = new WebSocketServer({ host: '127.0.0.1', port, path: '/graphql' });
useServer(
  {
    schema,
    roots: { query: { hello: () => 'world' } },
    onConnect: (ctx) => (ctx.connectionParams || {}).token === 'secret',
  },
  wss,
);
process.on('SIGUSR2', () => {
  console.log(`TERMINATING ${wss.clients.size}`);
  for (const ws of wss.clients) ws.close(4499, 'Terminated');
});
wss.on('listening', () => console.log(`LISTENING ${wss.address().port}`));
