/**
 * A loopback origin with the behaviours the web actually has: redirects and loops, slow and hanging
 * servers, resets, lies about Content-Length, non-HTTP answers, compressed bodies and bombs, 429s
 * and flaky 5xx, odd charsets and binary. Started on port 0 by tests, the demo and the benchmarks.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, constants, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';

export interface Origin {
  url: string;
  port: number;
  server: Server;
  /** Requests seen per path+query, for retry tests. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;

/** Bombs are built once: small on the wire, huge decoded. */
let bombs: { gzip: Buffer; br: Buffer } | undefined;
function getBombs() {
  if (!bombs) {
    const zeros = Buffer.alloc(256 * MiB);
    bombs = {
      gzip: gzipSync(zeros, { level: 9 }),
      br: brotliCompressSync(zeros, { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } }),
    };
  }
  return bombs;
}

type Handler = (req: IncomingMessage, res: ServerResponse, q: URLSearchParams, origin: Origin) => void;

function num(q: URLSearchParams, name: string, fallback: number): number {
  const v = q.get(name);
  return v === null ? fallback : Number(v);
}

const routes: Record<string, Handler> = {
  '/ok': (_req, res, q) => {
    const size = num(q, 'size', 2);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': size });
    res.end('x'.repeat(size));
  },
  '/status': (_req, res, q) => {
    res.writeHead(num(q, 'code', 200), { 'content-type': 'text/plain' });
    res.end(`status ${q.get('code')}`);
  },
  '/delay': (_req, res, q) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('late');
    }, num(q, 'ms', 100));
  },
  '/redirect': (_req, res, q) => {
    const n = num(q, 'n', 1);
    const code = num(q, 'code', 302);
    res.writeHead(code, { location: n > 1 ? `/redirect?n=${n - 1}&code=${code}` : (q.get('to') ?? '/ok') });
    res.end();
  },
  '/to': (_req, res, q) => {
    res.writeHead(num(q, 'code', 302), { location: q.get('location') ?? '/ok' });
    res.end();
  },
  '/loop': (_req, res) => {
    res.writeHead(302, { location: '/loop' });
    res.end();
  },
  '/slow-headers': (_req, res, q) => {
    setTimeout(() => {
      res.writeHead(200);
      res.end('slow');
    }, num(q, 'ms', 5_000));
  },
  '/trickle': (_req, res, q) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('.'), num(q, 'every', 1_000));
    res.on('close', () => clearInterval(timer));
  },
  '/hang': () => {
    // accept and never answer
  },
  '/reset': (req) => {
    req.socket.destroy();
  },
  '/reset-mid': (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000 });
    res.write('partial body');
    setTimeout(() => req.socket.resetAndDestroy?.() ?? req.socket.destroy(), 20);
  },
  '/short': (req) => {
    req.socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nonly ten b');
  },
  '/garbage': (req) => {
    req.socket.end('SSH-2.0-OpenSSH_9.2 this is not HTTP\r\n\r\n');
  },
  '/huge-headers': (_req, res) => {
    res.writeHead(200, { 'x-big': 'h'.repeat(100 * 1024) });
    res.end('ok');
  },
  '/big': (_req, res, q) => {
    const total = num(q, 'mb', 64) * MiB;
    res.writeHead(200, { 'content-type': q.get('type') ?? 'application/octet-stream', 'content-length': total });
    const block = Buffer.alloc(64 * 1024, 97);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += block.length;
        if (!res.write(block)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
    res.on('close', () => (sent = total));
  },
  '/gzip': (_req, res, q) => {
    const body = gzipSync('g'.repeat(num(q, 'size', 1000)));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    res.end(body);
  },
  '/br': (_req, res, q) => {
    const body = brotliCompressSync('b'.repeat(num(q, 'size', 1000)));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'br' });
    res.end(body);
  },
  '/deflate': (_req, res, q) => {
    const text = 'd'.repeat(num(q, 'size', 1000));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'deflate' });
    res.end(q.get('raw') ? deflateRawSync(text) : deflateSync(text));
  },
  '/bad-gzip': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    res.end(Buffer.from('this is not gzip at all'));
  },
  '/bomb': (_req, res, q) => {
    const kind = q.get('kind') === 'br' ? 'br' : 'gzip';
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': kind });
    res.end(getBombs()[kind]);
  },
  '/retry-after': (req, res, q, origin) => {
    const seen = origin.hits.get(req.url!) ?? 0;
    if (seen <= num(q, 'times', 1)) {
      const seconds = num(q, 'after', 1);
      const value = q.get('date') ? new Date(Date.now() + seconds * 1000).toUTCString() : String(seconds);
      res.writeHead(num(q, 'code', 429), { 'retry-after': value });
      return void res.end('slow down');
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('finally');
  },
  '/flaky': (req, res, q, origin) => {
    const seen = origin.hits.get(req.url!) ?? 0;
    if (seen <= num(q, 'fails', 2)) {
      res.writeHead(503);
      return void res.end('unavailable');
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('recovered');
  },
  '/binary': (_req, res, q) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(randomBytes(num(q, 'size', 256)));
  },
  '/latin1': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; charset=iso-8859-1' });
    res.end(Buffer.from('caf\xe9 cr\xe8me', 'latin1'));
  },
  '/bad-utf8': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(Buffer.from([0x68, 0x69, 0xff, 0xfe, 0x00, 0xc3]));
  },
  '/echo': (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
    });
  },
};

/**
 * Starts the origin on 127.0.0.1, port 0.
 *
 * @example
 * const origin = await startOrigin();
 * await fetch(`${origin.url}/status?code=503`);
 * await origin.close();
 */
export async function startOrigin(host = '127.0.0.1'): Promise<Origin> {
  const origin = { hits: new Map<string, number>() } as Origin;
  const server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    const url = new URL(req.url!, 'http://origin');
    origin.hits.set(req.url!, (origin.hits.get(req.url!) ?? 0) + 1);
    const route = routes[url.pathname.replace(/^(\/[a-z0-9-]+).*$/, '$1')];
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('no such route');
    }
    route(req, res, url.searchParams, origin);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  origin.server = server;
  origin.port = port;
  origin.url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  origin.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return origin;
}
