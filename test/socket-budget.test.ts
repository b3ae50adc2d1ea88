import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_DEFAULTS, maxSocketsFromEnv, type Lookup } from '../functions/core/engine/agent.ts';
import { tempDir } from './support/tmp.ts';
import { Fetcher, FETCHER_DEFAULTS } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { ConfigError } from '../functions/core/errors.ts';
import { testOptions } from './support/engine.ts';
import type { ManyOriginsConfig, ManyOriginsReport } from './support/many-origins.ts';

/**
 * One loopback server standing in for every origin; it counts the connections it accepts, by Host.
 * `?ms=N` answers after N ms; `?hold=1` answers when the test calls `release()`.
 */
interface CountingOrigin {
  port: number;
  connections: number;
  hosts: string[];
  held: (() => void)[];
  release(): void;
  close(): Promise<void>;
}

async function startCountingOrigin(): Promise<CountingOrigin> {
  const sockets = new Set<Socket>();
  const origin: CountingOrigin = {
    port: 0,
    connections: 0,
    hosts: [],
    held: [],
    release: () => origin.held.splice(0).forEach((answer) => answer()),
    close: async () => {},
  };
  const seen = new WeakSet<Socket>();
  const server: Server = createServer((req, res) => {
    // A connection's first request names the origin it was opened for.
    if (!seen.has(req.socket)) {
      seen.add(req.socket);
      origin.hosts.push(String(req.headers.host).split(':')[0]!);
    }
    const query = new URL(req.url!, 'http://x').searchParams;
    const answer = () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
      res.end('ok');
    };
    if (query.get('hold')) origin.held.push(answer);
    else setTimeout(answer, Number(query.get('ms') ?? 0));
  });
  server.on('connection', (socket: Socket) => {
    origin.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.port = (server.address() as AddressInfo).port;
  origin.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return origin;
}

/** Every name is a distinct origin to undici and resolves to the one loopback server. */
const loopbackNames: Lookup = (_host, _options, callback) => callback(null, [{ address: '127.0.0.1', family: 4 }]);
const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] });

describe('the socket budget', () => {
  let origin: CountingOrigin;
  beforeAll(async () => {
    origin = await startCountingOrigin();
  });
  afterAll(() => origin.close());

  it('closes the least recently used idle socket of another origin when full, and keeps the rest', async () => {
    const fetcher = new Fetcher(guard, loopbackNames, { maxSockets: 2 });
    const options = testOptions({ retries: 0 });
    const get = async (host: string) => (await fetcher.fetch({ index: 0, url: `http://${host}:${origin.port}/` }, options)).record;
    try {
      const before = origin.connections;
      expect(await get('a.test')).toMatchObject({ ok: true });
      expect(await get('b.test')).toMatchObject({ ok: true });
      expect(await get('a.test')).toMatchObject({ ok: true }); // a reuses its socket and becomes the most recent
      expect(origin.connections - before).toBe(2);
      expect(await get('c.test')).toMatchObject({ ok: true }); // full: b, the least recently used, is closed
      expect(fetcher.sockets).toMatchObject({ max: 2, peak: 2, evicted: 1 });
      expect(await get('a.test')).toMatchObject({ ok: true }); // a's socket survived
      expect(origin.connections - before).toBe(3);
      expect(origin.hosts.slice(-3)).toEqual(['a.test', 'b.test', 'c.test']);
    } finally {
      await fetcher.close();
    }
  });

  it('makes a connect wait, rather than exceed the budget, while every socket has a request running', async () => {
    const fetcher = new Fetcher(guard, loopbackNames, { maxSockets: 3 });
    const options = testOptions({ retries: 0, concurrency: 12 });
    try {
      const records = await Promise.all(
        Array.from({ length: 12 }, (_, i) => fetcher.fetch({ index: i, url: `http://w${i}.test:${origin.port}/?ms=40` }, options)),
      );
      expect(records.map((r) => r.record.ok)).toEqual(new Array(12).fill(true));
      const stats = fetcher.sockets;
      expect(stats.peak).toBe(3);
      expect(stats.waited).toBeGreaterThanOrEqual(9);
      expect(stats.evicted).toBeGreaterThanOrEqual(9);
    } finally {
      await fetcher.close();
    }
  });

  it('gives the slot back when a connect fails: refused, or blocked by the guard before any socket', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const fetcher = new Fetcher(guard, loopbackNames, { maxSockets: 2 });
    const options = testOptions({ retries: 0 });
    try {
      const failing = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          fetcher.fetch({ index: i, url: i % 2 ? `http://r${i}.test:${closedPort}/` : `http://127.0.0.2:${20_000 + i}/` }, options),
        ),
      );
      expect(failing.map((r) => r.record.error?.code)).toEqual(Array.from({ length: 20 }, (_, i) => (i % 2 ? 'connect' : 'blocked')));
      expect(fetcher.sockets.inUse).toBe(0);
      const ok = await Promise.all(['x', 'y'].map((h, i) => fetcher.fetch({ index: i, url: `http://${h}.test:${origin.port}/` }, options)));
      expect(ok.map((r) => r.record.ok)).toEqual([true, true]);
    } finally {
      await fetcher.close();
    }
  });

  it('lets thousands of waiting connects fail one after another without deepening the stack', async () => {
    const fetcher = new Fetcher(guard, loopbackNames, { maxSockets: 1 });
    const options = testOptions({ retries: 0, timeoutMs: 10_000 });
    try {
      const slow = fetcher.fetch({ index: 0, url: `http://slow.test:${origin.port}/?hold=1` }, options);
      await expect.poll(() => origin.held.length).toBe(1);
      // distinct origins (ports), each refused by the guard inside the connector, all queued behind the held one
      const blocked = Array.from({ length: 5_000 }, (_, i) => fetcher.fetch({ index: i + 1, url: `http://127.0.0.2:${10_000 + i}/` }, options));
      await expect.poll(() => fetcher.sockets.waited, { timeout: 20_000 }).toBe(5_000);
      origin.release();
      expect((await slow).record.ok).toBe(true);
      const codes = new Set((await Promise.all(blocked)).map((r) => r.record.error?.code));
      expect([...codes]).toEqual(['blocked']);
    } finally {
      await fetcher.close();
    }
  });

  it('keeps a bounded number of Agents, closing the least recently used one gracefully (its requests finish)', async () => {
    const fetcher = new Fetcher(guard, loopbackNames, { maxSockets: 64 });
    const n = FETCHER_DEFAULTS.maxAgents + 4;
    try {
      // one Agent per perHost value: the first ones are closed while their requests are held by the server
      const pending = Array.from({ length: n }, (_, i) =>
        fetcher.fetch({ index: i, url: `http://g${i}.test:${origin.port}/?hold=1` }, testOptions({ retries: 0, perHost: i + 1, timeoutMs: 20_000 })),
      );
      await expect.poll(() => origin.held.length, { timeout: 20_000 }).toBe(n);
      origin.release();
      const records = await Promise.all(pending);
      expect(records.map((r) => r.record.error?.code ?? 'ok')).toEqual(new Array(n).fill('ok'));
      expect((await fetcher.fetch({ index: 0, url: `http://g0.test:${origin.port}/` }, testOptions({ retries: 0, perHost: 1 }))).record.ok).toBe(true);
    } finally {
      await fetcher.close();
    }
  });

  it('is stated once and read from FANOUT_MAX_SOCKETS, strictly', () => {
    expect(maxSocketsFromEnv({})).toBe(AGENT_DEFAULTS.maxSockets);
    expect(AGENT_DEFAULTS.maxSockets).toBe(256);
    expect(maxSocketsFromEnv({ FANOUT_MAX_SOCKETS: ' 128 ' })).toBe(128);
    for (const bad of ['0', '-1', '1.5', 'lots', '1e3']) {
      expect(() => maxSocketsFromEnv({ FANOUT_MAX_SOCKETS: bad })).toThrow(ConfigError);
      expect(() => maxSocketsFromEnv({ FANOUT_MAX_SOCKETS: bad })).toThrow(/FANOUT_MAX_SOCKETS/);
    }
  });

  it('the embedded runtime, with no Lambda limit, allows 1,024 sockets per worker unless FANOUT_MAX_SOCKETS says otherwise', async () => {
    const { EmbeddedRuntime } = await import('../functions/local/runtime.ts');
    const saved = process.env.FANOUT_MAX_SOCKETS;
    try {
      delete process.env.FANOUT_MAX_SOCKETS;
      expect(new EmbeddedRuntime({ dataDir: tempDir(), guard }).fetcher.sockets.max).toBe(AGENT_DEFAULTS.localMaxSockets);
      expect(AGENT_DEFAULTS.localMaxSockets).toBe(1024);
      process.env.FANOUT_MAX_SOCKETS = '128';
      expect(new EmbeddedRuntime({ dataDir: tempDir(), guard }).fetcher.sockets.max).toBe(128);
    } finally {
      if (saved === undefined) delete process.env.FANOUT_MAX_SOCKETS;
      else process.env.FANOUT_MAX_SOCKETS = saved;
    }
  });
});

const child = fileURLToPath(new URL('./support/many-origins.ts', import.meta.url));

/** Runs the many-origins worker under Lambda's descriptor limit and returns its reports, one per config. */
function runUnderLambdaLimit(configs: ManyOriginsConfig[]): Promise<ManyOriginsReport[]> {
  const command = `ulimit -n 1024 && exec "${process.execPath}" --import tsx "${child}" '${JSON.stringify(configs)}'`;
  return new Promise((resolve, reject) => {
    const proc = spawn('bash', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FANOUT_MAX_SOCKETS: '' } });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d));
    proc.stderr.on('data', (d: Buffer) => (err += d));
    proc.on('error', reject);
    proc.on('close', (code) => {
      if (code !== 0) return reject(new Error(`child exited ${code}: ${err.slice(-2000)}`));
      resolve(out.trim().split('\n').map((line) => JSON.parse(line) as ManyOriginsReport));
    });
  });
}

describe('a worker under ulimit -n 1024 fetching 3,000 distinct origins', () => {
  const concurrencies = [64, 128];
  let origin: CountingOrigin;
  let reports: Promise<ManyOriginsReport[]>;
  // Each run takes ~2 s on an idle machine; the generous timeout is for a loaded one.
  beforeAll(async () => {
    origin = await startCountingOrigin();
    reports = runUnderLambdaLimit(concurrencies.map((concurrency) => ({ port: origin.port, origins: 3_000, concurrency, blocked: 10 })));
    reports.catch(() => {}); // awaited by each test
  });
  afterAll(() => origin.close());

  it.each(concurrencies.map((c, i) => [c, i]))('at concurrency %i: every record ok, no EMFILE, open sockets within the budget', async (_c, i) => {
    const report = (await reports)[i]!;
    expect(report.nofile).toBe('1024');
    expect(report.total).toBe(3_010);
    // the guard still refuses 127.0.0.2, as a literal and behind a name; nothing else failed
    expect(report.errors).toEqual({ blocked: 10 });
    expect(report.ok).toBe(3_000);
    expect(report.sockets.max).toBe(AGENT_DEFAULTS.maxSockets);
    expect(report.sockets.peak).toBeLessThanOrEqual(report.sockets.max);
    expect(report.sockets.evicted).toBeGreaterThan(0);
    expect(report.fdListingFailures).toBe(0);
    expect(report.peakFds - report.baseFds).toBeLessThanOrEqual(report.sockets.max);
  }, 90_000);
});
