// The bench's Node origin: /1k answers 1 KiB at once, /delay/MS answers 1 KiB after MS ms.
import { createServer } from 'node:http';

const body = Buffer.alloc(1024, 120);
const server = createServer((req, res) => {
  const delay = /^\/delay\/(\d+)/.exec(req.url ?? '');
  const answer = () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  };
  if (delay) setTimeout(answer, Number(delay[1]));
  else answer();
});
server.keepAliveTimeout = 120_000;
server.maxRequestsPerSocket = 0;
server.listen(Number(process.argv[2]), '127.0.0.1', 4096); // a deep accept queue: 500 connections open at once
