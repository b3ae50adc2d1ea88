/**
 * The engine against servers that misbehave on purpose (issue 14 items 2 and 9, issue 12 item 2):
 * stacked Content-Encodings, decoding that outlasts the deadline, status 000, unsolicited
 * 100 Continue, connections lost mid-body; and the record fields that come with them (sha256,
 * queuedMs, set-cookie arrays).
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { brotliCompressSync, crc32, gzipSync } from 'node:zlib';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordSchema } from '../functions/api/schemas.ts';
import { AGENT_DEFAULTS } from '../functions/core/engine/agent.ts';
import { classifyError } from '../functions/core/engine/classify.ts';
import { exchange, EXCHANGE_DEFAULTS } from '../functions/core/engine/exchange.ts';
import { fetchItem } from '../functions/core/engine/fetch-item.ts';
import { isRetryableFailure, isRetryableStatus } from '../functions/core/engine/retry.ts';
import { openFetcher, testOptions } from './support/engine.ts';
import { startRawOrigin, type RawOrigin } from './support/raw-origin.ts';

/** One gzip member holding `data` in stored (uncompressed) deflate blocks: cheap to stack 3,000 deep. */
function storedGzip(data: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])];
  for (let at = 0; ; at += 65535) {
    const block = data.subarray(at, at + 65535);
    const final = at + 65535 >= data.length;
    const head = Buffer.alloc(5);
    head[0] = final ? 1 : 0;
    head.writeUInt16LE(block.length, 1);
    head.writeUInt16LE(~block.length & 0xffff, 3);
    parts.push(head, block);
    if (final) break;
  }
  const tail = Buffer.alloc(8);
  tail.writeUInt32LE(crc32(data), 0);
  tail.writeUInt32LE(data.length >>> 0, 4);
  parts.push(tail);
  return Buffer.concat(parts);
}

function respond(socket: Socket, head: string, body: Buffer | string = ''): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  socket.write(`${head}\r\ncontent-length: ${bytes.length}\r\n\r\n`);
  socket.write(bytes);
}

let engine: ReturnType<typeof openFetcher>;
let raw: RawOrigin;
const layered = new Map<number, Buffer>();
let doubleBomb: Buffer = Buffer.alloc(0);

beforeAll(async () => {
  engine = openFetcher();
  let body: Buffer = Buffer.from('hello');
  for (let i = 1; i <= 3000; i++) {
    body = storedGzip(body);
    if (i === 5 || i === 6 || i === 3000) layered.set(i, body);
  }
  // gzip of 96 gzip members of 64 MiB of zeros each: 6 GiB decoded from 14 KB on the wire, less
  // than the first decoder's buffer, so the whole response has ended long before decoding has.
  const inner = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
  doubleBomb = gzipSync(Buffer.concat(Array.from({ length: 96 }, () => inner)), { level: 9 });

  raw = await startRawOrigin((socket, req) => {
    const [path, query = ''] = req.path.split('?');
    const q = new URLSearchParams(query);
    switch (path) {
      case '/layers': {
        const n = Number(q.get('n'));
        return respond(socket, `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: ${Array(n).fill('gzip').join(', ')}`, layered.get(n)!);
      }
      case '/gzip-br':
        // "gzip, br": gzip was applied first, then br; undone in the reverse order.
        return respond(socket, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip, br', brotliCompressSync(gzipSync('two layers')));
      case '/double-bomb':
        return respond(socket, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip, gzip', doubleBomb);
      case '/status-000':
        return respond(socket, 'HTTP/1.1 000 Weird', 'ok');
      case '/status-099':
        return respond(socket, 'HTTP/1.1 099 Weird', 'ok');
      case '/continue':
        socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        return respond(socket, 'HTTP/1.1 200 OK', 'ok');
      case '/early-hints':
        socket.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n');
        return respond(socket, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain', 'after hints');
      case '/cut': {
        // Loses the connection after 10 of 100 body bytes, the first `fails` times; then answers whole.
        if (req.seen >= Number(q.get('fails') ?? 99)) return respond(socket, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain', 'y'.repeat(100));
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789');
        return void setTimeout(() => socket.destroy(), 20);
      }
      case '/status':
        return respond(socket, `HTTP/1.1 ${q.get('code')} X\r\ncontent-type: text/plain`, 'status');
      case '/cookies':
        return respond(
          socket,
          'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nset-cookie: a=1; Path=/\r\nset-cookie: b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT\r\n' +
            'vary: accept\r\nvary: origin',
          'c',
        );
      case '/big-headers':
        // `kb` KiB of headers: ~100 KB is what some nginx sites send (long cookies, CSP).
        return respond(socket, `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-big: ${'h'.repeat(Number(q.get('kb')) * 1024)}`, 'ok');
      case '/slow-redirect':
        return void setTimeout(() => respond(socket, 'HTTP/1.1 302 Found\r\nlocation: /slow-ok'), 300);
      case '/slow-ok':
        return void setTimeout(() => respond(socket, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain', 'late'), 300);
      case '/one-cookie':
        return respond(socket, 'HTTP/1.1 200 OK\r\nset-cookie: only=1', '');
      default:
        return respond(socket, 'HTTP/1.1 404 Not Found', 'no');
    }
  });
}, 30_000);

afterAll(async () => {
  await engine.close();
  await raw.close();
});

describe('stacked Content-Encoding (issue 14 item 2)', () => {
  it(`refuses 3,000 gzip layers at once with protocol, keeping status and headers (at most ${EXCHANGE_DEFAULTS.maxDecodingLayers} are decoded)`, async () => {
    const t0 = Date.now();
    const { record, body } = await engine.fetch(`${raw.url}/layers?n=3000`, { timeoutMs: 10_000, retries: 2 });
    // Before: 65-86 s of decoding, ending ok, whatever the deadline.
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(record).toMatchObject({ ok: false, status: 200, attempts: 1, sha256: null, error: { code: 'protocol' } });
    expect(record.error!.message).toBe(`3000 stacked content-encodings; fanout decodes at most ${EXCHANGE_DEFAULTS.maxDecodingLayers}`);
    expect(record.headers['content-type']).toBe('text/plain');
    expect(body).toBeNull();
  });

  it('decodes 5 layers, as curl does, and refuses 6', async () => {
    expect(EXCHANGE_DEFAULTS.maxDecodingLayers).toBe(5);
    const five = await engine.fetch(`${raw.url}/layers?n=5`);
    expect(five.record).toMatchObject({ ok: true, status: 200, bytes: 5, error: null });
    expect(five.body!.toString()).toBe('hello');
    const { record } = await engine.fetch(`${raw.url}/layers?n=6`);
    expect(record).toMatchObject({ ok: false, status: 200, error: { code: 'protocol', message: '6 stacked content-encodings; fanout decodes at most 5' } });
  });

  it('decodes two layers (gzip then br) as sent', async () => {
    const { record, body } = await engine.fetch(`${raw.url}/gzip-br`);
    expect(record).toMatchObject({ ok: true, status: 200, bytes: 10, error: null });
    expect(body!.toString()).toBe('two layers');
  });

  it('settles at once when aborted while the decoders are still at work after the last byte came', async () => {
    const agent = new Agent();
    try {
      const ex = exchange(
        agent,
        { origin: raw.url, path: '/double-bomb', method: 'GET', headers: {}, body: null },
        { limit: Number.MAX_SAFE_INTEGER, keep: false },
      );
      const deadline = new Error('deadline');
      setTimeout(() => ex.abort(deadline), 300);
      const t0 = Date.now();
      // 6 GiB to inflate: many seconds of decoding that the abort must not wait for.
      await expect(ex.result).rejects.toBe(deadline);
      expect(Date.now() - t0).toBeLessThan(3_000);
      expect(deadline).toMatchObject({ responseStatus: 200 });
    } finally {
      await agent.destroy();
    }
  });

  it('leaves nothing running after the abort: a process that aborts mid-decoding exits at once', async () => {
    const script = `
      import { Agent } from 'undici';
      import { exchange } from ${JSON.stringify(fileURLToPath(new URL('../functions/core/engine/exchange.ts', import.meta.url)))};
      const agent = new Agent();
      const ex = exchange(agent, { origin: ${JSON.stringify(raw.url)}, path: '/double-bomb', method: 'GET', headers: {}, body: null },
        { limit: Number.MAX_SAFE_INTEGER, keep: false });
      setTimeout(() => {
        console.log('aborted ' + Date.now());
        ex.abort(new Error('deadline'));
      }, 300);
      await ex.result.catch(() => {});
      await agent.destroy();`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const exited = new Promise<number>((resolve) => child.on('exit', () => resolve(Date.now())));
    const kill = setTimeout(() => child.kill('SIGKILL'), 12_000);
    try {
      const exit = await exited;
      const abortedAt = Number(/aborted (\d+)/.exec(out)?.[1]);
      // 6 GiB left to inflate would keep it alive for many seconds: nothing may wait on it.
      expect(exit - abortedAt).toBeLessThan(3_000);
      expect(child.exitCode).toBe(0);
    } finally {
      clearTimeout(kill);
    }
  }, 15_000);

  it('the attempt deadline cuts a slow-decoding body: timeout, status kept', async () => {
    const t0 = Date.now();
    // 256 MiB to inflate in 16 KiB steps takes far longer than 100 ms; before, the deadline did not
    // stop decoding once the last byte had come, and the record ended ok after the whole cut.
    const { record } = await engine.fetch(`${raw.url}/double-bomb`, { timeoutMs: 100, retries: 0, bodies: 'none', maxBodyBytes: 256 * 1024 * 1024 });
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(record).toMatchObject({ ok: false, truncated: false, error: { code: 'timeout' } });
  });
});

describe('responses undici cannot represent (issue 14 item 9)', () => {
  for (const code of ['000', '099']) {
    it(`status ${code} is a protocol error with a plain message, not retried`, async () => {
      const { record } = await engine.fetch(`${raw.url}/status-${code}`, { retries: 2 });
      expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'protocol', message: `invalid status code ${code} in the response` } });
    });
  }

  it('an unsolicited 100 Continue is a protocol error with a plain message, not retried', async () => {
    const { record } = await engine.fetch(`${raw.url}/continue`, { retries: 2 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'protocol' } });
    expect(record.error!.message).toMatch(/not asked for/);
    expect(record.error!.message).not.toMatch(/undici|assert|bad response/i);
  });

  it("undici's assertion failures never reach the record as such", () => {
    const assertion = Object.assign(new Error('The expression evaluated to a falsy value:\n\n  assert(statusCode >= 100)\n'), { code: 'ERR_ASSERTION' });
    expect(classifyError(assertion, true)).toEqual({ code: 'protocol', transient: false, message: 'malformed HTTP response' });
  });

  it('103 Early Hints before the response is skipped', async () => {
    const { record, body } = await engine.fetch(`${raw.url}/early-hints`);
    expect(record).toMatchObject({ ok: true, status: 200, error: null });
    expect(record.headers.link).toBeUndefined();
    expect(body!.toString()).toBe('after hints');
  });
});

describe('retries (issue 12 item 2)', () => {
  it('a connection lost mid-body is retried for GET and recovers', async () => {
    const { record } = await engine.fetch(`${raw.url}/cut?fails=1&k=recover`, { retries: 2 });
    expect(record).toMatchObject({ ok: true, status: 200, bytes: 100, attempts: 2, error: null });
  });

  it('a connection lost mid-body every time ends reset, saying how far it got', async () => {
    const { record } = await engine.fetch(`${raw.url}/cut?k=always`, { retries: 2 });
    expect(record).toMatchObject({
      ok: false,
      status: 200,
      attempts: 3,
      error: { code: 'reset', message: 'connection closed mid-body after 10 of 100 bytes' },
    });
  });

  for (const method of ['POST', 'PATCH']) {
    it(`a connection lost mid-body is not retried for ${method}`, async () => {
      const { record } = await engine.fetch(`${raw.url}/cut?k=${method}`, { retries: 2, method, body: 'x' });
      expect(record).toMatchObject({ ok: false, status: 200, attempts: 1, error: { code: 'reset' } });
    });
  }

  for (const method of ['PUT', 'DELETE', 'OPTIONS']) {
    it(`a connection lost mid-body is retried for ${method}`, async () => {
      const { record } = await engine.fetch(`${raw.url}/cut?k=${method}`, { retries: 1, method });
      expect(record.attempts, method).toBe(2);
    });
  }

  for (const [code, attempts] of [[501, 1], [505, 1], [500, 3], [502, 3], [429, 3]] as const) {
    it(`status ${code} takes ${attempts} attempt(s) with retries 2`, async () => {
      const { record } = await engine.fetch(`${raw.url}/status?code=${code}`, { retries: 2 });
      expect(record).toMatchObject({ ok: false, status: code, attempts, error: null });
    });
  }

  it('states the rules in one place', () => {
    expect([429, 500, 502, 503, 504, 599].every(isRetryableStatus)).toBe(true);
    expect([200, 404, 501, 505, 600].some(isRetryableStatus)).toBe(false);
    expect(isRetryableFailure(true, false, 'POST')).toBe(true); // before any response: the request may not have arrived
    expect(isRetryableFailure(true, true, 'POST')).toBe(false);
    expect(isRetryableFailure(true, true, 'get')).toBe(true);
    expect(isRetryableFailure(false, false, 'GET')).toBe(false);
  });
});

describe('record fields (issue 12 item 4, issue 11 item 3)', () => {
  it('sha256 is the hash of the decoded body, with bodies inline or none', async () => {
    const want = createHash('sha256').update('two layers').digest('hex');
    for (const bodies of ['inline', 'none'] as const) {
      const { record } = await engine.fetch(`${raw.url}/gzip-br`, { bodies });
      expect(record.sha256, bodies).toBe(want);
    }
  });

  it('sha256 covers the bytes kept up to the cut', async () => {
    const { record } = await engine.fetch(`${raw.url}/gzip-br`, { maxBodyBytes: 3 });
    expect(record).toMatchObject({ truncated: true, bytes: 3, sha256: createHash('sha256').update('two').digest('hex') });
  });

  it('sha256 is null when no body or no response came', async () => {
    expect((await engine.fetch(`${raw.url}/one-cookie`)).record).toMatchObject({ status: 200, bytes: 0, sha256: null });
    expect((await engine.fetch(`${raw.url}/status-000`)).record.sha256).toBeNull();
  });

  it('keeps set-cookie as an array of strings, never joined; other repeated fields joined', async () => {
    const { record } = await engine.fetch(`${raw.url}/cookies`);
    expect(record.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT']);
    expect(record.headers.vary).toBe('accept, origin');
    const one = await engine.fetch(`${raw.url}/one-cookie`);
    expect(one.record.headers['set-cookie']).toEqual(['only=1']);
    expect(RecordSchema.parse(record)).toEqual(record);
  });

  it('puts sha256 after truncated and queuedMs after durationMs', async () => {
    const { record } = await engine.fetch(`${raw.url}/gzip-br`);
    const keys = Object.keys(record);
    expect(keys.indexOf('sha256')).toBe(keys.indexOf('truncated') + 1);
    expect(keys.indexOf('queuedMs')).toBe(keys.indexOf('durationMs') + 1);
    expect(keys.at(-1)).toBe('error');
  });
});

describe('response headers', () => {
  it(`an Agent with maxHeaderSize ${AGENT_DEFAULTS.maxHeaderSize / 1024} KiB keeps ~100 KB of headers`, async () => {
    const agent = new Agent({ maxHeaderSize: AGENT_DEFAULTS.maxHeaderSize });
    try {
      const { record } = await fetchItem({ index: 0, url: `${raw.url}/big-headers?kb=100` }, testOptions(), { dispatcher: agent });
      expect(record).toMatchObject({ ok: true, status: 200, error: null });
      expect((record.headers['x-big'] as string).length).toBe(100 * 1024);
    } finally {
      await agent.destroy();
    }
  });

  it("headers past the Agent's limit are a protocol error that names the limit, not retried", async () => {
    const kb = AGENT_DEFAULTS.maxHeaderSize / 1024 + 1;
    const { record } = await engine.fetch(`${raw.url}/big-headers?kb=${kb}`, { retries: 2 });
    // undici stops reading before the status reaches the handler: the status cannot be kept.
    expect(record).toMatchObject({
      ok: false,
      status: null,
      attempts: 1,
      error: { code: 'protocol', message: `response headers larger than ${AGENT_DEFAULTS.maxHeaderSize / 1024} KiB` },
    });
  });
});

describe('the attempt deadline', () => {
  it('is shared by the redirect hops of an attempt', async () => {
    // 300 ms per hop, 500 ms for the attempt: the second hop runs out.
    const { record } = await engine.fetch(`${raw.url}/slow-redirect`, { timeoutMs: 500, retries: 0 });
    expect(record).toMatchObject({ ok: false, redirects: 1, finalUrl: `${raw.url}/slow-ok`, error: { code: 'timeout' } });
  });
});

describe('queuedMs: waiting for a connection slot', () => {
  let server: Server;
  let origin: string;
  beforeAll(async () => {
    server = createServer((_req, res) => setTimeout(() => res.end('slow'), 400));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('is counted apart from durationMs and the deadline: with two connections, the last two of six requests wait for four', async () => {
    // Each response takes 400 ms; the fifth and sixth requests wait ~800 ms for a connection, then
    // take 400 ms: more than their 1,000 ms deadline, which runs only once they hold a connection.
    // (perHost 2: undici's Agent makes a Pool, whose queue is what is measured; see notes/engine.md.)
    const options = { perHost: 2, timeoutMs: 1_000, retries: 0 };
    const results = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => engine.fetch(`${origin}/q${i}`, options)));
    const records = results.map((r) => r.record);
    for (const r of records) expect(r).toMatchObject({ ok: true, status: 200, error: null });
    const queued = records.map((r) => r.queuedMs).sort((a, b) => a - b);
    expect(queued[0]).toBeLessThan(queued[5]!);
    expect(queued[5]).toBeGreaterThan(300); // waited for at least one 400 ms response
    for (const r of records) expect(r.durationMs).toBeLessThan(1_000); // never counts the wait
  });

  it('with one connection per host too, when the Agent makes a Pool for it (undici makes a bare Client by default)', async () => {
    const agent = new Agent({ connections: 1, factory: (o, opts) => new Pool(o, opts) });
    try {
      const options = testOptions({ perHost: 1, timeoutMs: 1_000, retries: 0 });
      const records = await Promise.all(
        [0, 1, 2, 3].map(async (i) => (await fetchItem({ index: i, url: `${origin}/p${i}` }, options, { dispatcher: agent })).record),
      );
      for (const r of records) expect(r).toMatchObject({ ok: true, status: 200, error: null });
      const queued = records.map((r) => r.queuedMs).sort((a, b) => a - b);
      expect(queued[3]).toBeGreaterThan(700); // waited for two 400 ms responses at least
    } finally {
      await agent.destroy();
    }
  });
});
