// A feed that sends each client one large message (a snapshot, as market
// data and state-sync feeds do) and then only answers pings, on Node's
// `ws`. `GET /send` on its control port sends it to every client
// connected; `GET /drop` cuts every connection. Per connection, the query chooses its form:
//   ?kind=text|binary  &size=BYTES  &fragments=N (1: one frame)
//   &bad_utf8_at=OFFSET (text: the byte there is 0xFF; the fragment after
//   the one holding it is sent only 2 s later, so a client that fails fast
//   closes before it).
// Prints `CONTROL <port>`, `LISTENING <port>`, `SENT <count>` and `CLOSED <code> <early|late>`
// (early: before the whole message went out).
// usage: node snapshot_server.js PORT [--tls CERT KEY]
const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const port = Number(args[0] || 0);
const tls = args.indexOf('--tls');
const server = tls >= 0
  ? https.createServer({ cert: fs.readFileSync(args[tls + 1]), key: fs.readFileSync(args[tls + 2]) })
  : http.createServer();
const wss = new WebSocketServer({ server, backlog: 4096 });
const clients = new Set();

wss.on('connection', (ws, req) => {
  const q = new URL(req.url, 'http://x').searchParams;
  ws.form = {
    text: q.get('kind') === 'text',
    size: Number(q.get('size') || 900 * 1024),
    fragments: Math.max(1, Number(q.get('fragments') || 1)),
    badAt: q.has('bad_utf8_at') ? Number(q.get('bad_utf8_at')) : -1,
  };
  ws.done = false;
  clients.add(ws);
  ws.on('close', (code) => {
    clients.delete(ws);
    console.log(`CLOSED ${code} ${ws.done ? 'late' : 'early'}`);
  });
  ws.on('error', () => {});
});

// One buffer per form, shared by every client sent it.
const payloads = new Map();
function payload(form) {
  const key = `${form.text} ${form.size} ${form.badAt}`;
  if (!payloads.has(key)) {
    const body = Buffer.alloc(form.size, form.text ? 'a' : 0x5a);
    if (form.badAt >= 0 && form.badAt < form.size) body[form.badAt] = 0xff;
    payloads.set(key, body);
  }
  return payloads.get(key);
}

async function send(ws) {
  const form = ws.form;
  const body = payload(form);
  const step = Math.ceil(body.length / form.fragments);
  const badFragment = form.badAt >= 0 ? Math.floor(form.badAt / step) : -1;
  for (let i = 0; i < form.fragments; i++) {
    const piece = body.subarray(i * step, Math.min(body.length, (i + 1) * step));
    const fin = i === form.fragments - 1;
    if (i === badFragment + 1) await new Promise((r) => setTimeout(r, 2000));
    if (ws.readyState !== ws.OPEN) return;
    ws.send(piece, { binary: !form.text, fin });
  }
  ws.done = true;
}

// GET /send on the control port (plain HTTP, also for a TLS feed) sends
// the message to every client connected; the answer is their number,
// printed again as `SENT <count>` once everything went out.
const control = http.createServer((req, res) => {
  if (req.url === '/drop') {
    // Every connection cut at once, as a proxy or load balancer restart
    // does; the TLS server (and its ticket keys) stays.
    const all = [...clients];
    for (const ws of all) ws.terminate();
    res.end(`${all.length}\n`);
    return;
  }
  if (req.url !== '/send') {
    res.writeHead(404).end();
    return;
  }
  const all = [...clients];
  res.end(`${all.length}\n`);
  Promise.all(all.map(send)).then(() => console.log(`SENT ${all.length}`));
});

control.listen(0, '127.0.0.1', () => {
  console.log(`CONTROL ${control.address().port}`);
  server.listen(port, '127.0.0.1', () => console.log(`LISTENING ${server.address().port}`));
});
