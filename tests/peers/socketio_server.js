// Socket.IO server for sockpulse's tests: `socket.io` 4 (Engine.IO 4), or
// socket.io 2 (Engine.IO 3) with `--v2`. Heartbeat 2 s + 1 s so tests see
// several heartbeats in seconds. Namespace `/admin` wants auth token
// "secret" (v4) and refuses everyone else; SIGUSR2 makes the server
// disconnect every socket of every namespace (a Socket.IO disconnect packet).
// Emits a `tick` event to `/` every 500 ms unless `--quiet`. `--heartbeat
// INTERVAL_MS,TIMEOUT_MS` changes the heartbeat (benchmarks use 10 s, 5 s).
// Prints `LISTENING <port>`.
const http = require('http');
const v2 = process.argv.includes('--v2');
const quiet = process.argv.includes('--quiet');
const port = Number(process.argv.find((a) => /^\d+$/.test(a)) || 0);
const hb = process.argv.indexOf('--heartbeat');
const heartbeat = (hb >= 0 ? process.argv[hb + 1] : '2000,1000').split(',').map(Number);
const httpServer = http.createServer();
const opts = { pingInterval: heartbeat[0], pingTimeout: heartbeat[1], transports: ['websocket'] };
const io = v2 ? require('socket.io-v2')(httpServer, opts) : new (require('socket.io').Server)(httpServer, opts);

const sockets = new Set();
for (const name of ['/', '/admin']) {
  const nsp = io.of(name);
  if (name === '/admin') {
    nsp.use((socket, next) => {
      const token = v2 ? socket.handshake.query.token : (socket.handshake.auth || {}).token;
      if (token === 'secret') return next();
      next(new Error('Not authorized'));
    });
  }
  nsp.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('disconnect', () => sockets.delete(socket));
  });
}
if (!quiet) setInterval(() => io.of('/').emit('tick', Date.now()), 500);
process.on('SIGUSR2', () => {
  console.log(`DISCONNECTING ${sockets.size}`);
  for (const s of sockets) s.disconnect(false);
});
httpServer.listen(port, '127.0.0.1', () => console.log(`LISTENING ${httpServer.address().port}`));
