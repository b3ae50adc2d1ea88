// Many distinct loopback origins in one process: one HTTP server listening on ORIGIN_COUNT ports
// of 127.0.0.1 (an origin is scheme + host + port, so each port is an origin to the fetcher's
// connection pools). Run under a raised descriptor limit (`ulimit -n`): each listener and each
// accepted connection is a descriptor.
//
//   GET /item/N           200, a small text body naming N
//   GET /item/N?delay=MS  the same after MS milliseconds
//   GET /item/N?size=B    a body of B bytes (text, compressible like HTML)
//   GET /stats            { requests, connections, open }
//
// Prints one JSON line when ready: { ports: [...] }. Lives until stdin closes.
import { createServer } from 'node:http';

const count = Number(process.env.ORIGIN_COUNT ?? '100');
let requests = 0;
let connections = 0;
let open = 0;

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://origin');
  if (url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ requests, connections, open }));
    return;
  }
  requests++;
  const answer = () => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const line = `item ${url.pathname.split('/').pop()} from ${req.socket.localPort}\n`;
    const size = Number(url.searchParams.get('size') ?? '0');
    res.end(size > 0 ? line.repeat(Math.ceil(size / line.length)).slice(0, size) : line);
  };
  const delay = Number(url.searchParams.get('delay') ?? '0');
  if (delay > 0) setTimeout(answer, delay);
  else answer();
});
server.keepAliveTimeout = 5_000;
server.on('connection', (socket) => {
  connections++;
  open++;
  socket.on('close', () => open--);
});

// One server, many listening sockets: `listen` on a net.Server binds one address, so each port
// gets its own http.Server sharing the handler.
const ports = [];
for (let i = 0; i < count; i++) {
  const s = i === 0 ? server : createServer(server.listeners('request')[0]);
  if (i > 0) {
    s.keepAliveTimeout = server.keepAliveTimeout;
    for (const l of server.listeners('connection')) s.on('connection', l);
  }
  await new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  ports.push(s.address().port);
}
process.stdout.write(JSON.stringify({ ports }) + '\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
