import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBody } from '../functions/core/engine/body-text.ts';
import { backoffMs, retryAfterMs } from '../functions/core/engine/retry.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { openFetcher, testOptions } from './support/engine.ts';

let origin: Origin;
let engine: ReturnType<typeof openFetcher>;

beforeAll(async () => {
  origin = await startOrigin();
  engine = openFetcher();
});
afterAll(async () => {
  await engine.close();
  await origin.close();
});

const url = (path: string) => `${origin.url}${path}`;

describe('responses', () => {
  it('records a 200 with headers, bytes, inline utf8 body and timing', async () => {
    const { record } = await engine.fetch(url('/ok?size=5'));
    expect(record).toMatchObject({
      ok: true,
      status: 200,
      finalUrl: url('/ok?size=5'),
      redirects: 0,
      bytes: 5,
      truncated: false,
      attempts: 1,
      error: null,
    });
    expect(record.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(record.durationMs).toBeGreaterThan(0);
    expect(new Date(record.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it('gives ok=false and error=null for a 4xx, which is a response, not a failure to fetch', async () => {
    const { record } = await engine.fetch(url('/status?code=404'));
    expect(record).toMatchObject({ ok: false, status: 404, error: null, attempts: 1 });
  });

  it('sends the job method, headers, body and default User-Agent; an item overrides them', async () => {
    const job = await engine.fetch(url('/echo'), { method: 'post', headers: { 'X-Job': 'j' }, body: 'job-body' });
    const echoed = JSON.parse(job.body!.toString());
    expect(echoed).toMatchObject({ method: 'POST', body: 'job-body' });
    expect(echoed.headers['x-job']).toBe('j');
    expect(echoed.headers['user-agent']).toMatch(/^fanout\//);
    expect(echoed.headers['accept-encoding']).toContain('gzip');

    const item = await engine.fetch(url('/echo'), { method: 'POST', body: 'job-body', userAgent: 'custom/1' }, {
      method: 'PUT',
      body: 'item-body',
      headers: { 'x-item': 'i' },
    });
    const echoedItem = JSON.parse(item.body!.toString());
    expect(echoedItem).toMatchObject({ method: 'PUT', body: 'item-body' });
    expect(echoedItem.headers).toMatchObject({ 'x-item': 'i', 'user-agent': 'custom/1' });
  });

  it('fetches a very long URL as given', async () => {
    const long = url(`/ok?size=1&pad=${'p'.repeat(8_000)}`);
    const { record } = await engine.fetch(long);
    expect(record).toMatchObject({ ok: true, status: 200, url: long, finalUrl: long });
  });

  it('keeps no body with bodies=none but still counts the bytes', async () => {
    const result = await engine.fetch(url('/ok?size=300'), { bodies: 'none' });
    expect(result.body).toBeNull();
    expect(result.record.bytes).toBe(300);
  });
});

describe('redirects', () => {
  it('follows up to maxRedirects and reports the final URL and hop count', async () => {
    const { record } = await engine.fetch(url('/redirect?n=3'));
    expect(record).toMatchObject({ ok: true, status: 200, redirects: 3, finalUrl: url('/ok') });
  });

  it('fails with too_many_redirects past the limit, keeping the last 3xx status', async () => {
    const { record } = await engine.fetch(url('/loop'), { maxRedirects: 4 });
    expect(record).toMatchObject({ ok: false, status: 302, redirects: 4, error: { code: 'too_many_redirects' } });
  });

  it('returns the 3xx itself when maxRedirects is 0', async () => {
    const { record } = await engine.fetch(url('/redirect?n=1'), { maxRedirects: 0 });
    expect(record).toMatchObject({ ok: false, status: 302, redirects: 0, error: null });
    expect(record.headers.location).toBe('/ok');
  });

  it('turns POST into GET on 303 and keeps it on 307', async () => {
    const see = await engine.fetch(url('/to?code=303&location=/echo'), { method: 'POST', body: 'x' });
    expect(JSON.parse(see.body!.toString())).toMatchObject({ method: 'GET', body: '' });
    const temp = await engine.fetch(url('/to?code=307&location=/echo'), { method: 'POST', body: 'x' });
    expect(JSON.parse(temp.body!.toString())).toMatchObject({ method: 'POST', body: 'x' });
  });

  it('drops credentials when a redirect leaves the origin', async () => {
    const other = await startOrigin();
    try {
      const target = encodeURIComponent(`${other.url}/echo`);
      const { body } = await engine.fetch(url(`/to?location=${target}`), { headers: { authorization: 'Bearer s3cret', 'x-keep': '1' } });
      const echoed = JSON.parse(body!.toString());
      expect(echoed.headers.authorization).toBeUndefined();
      expect(echoed.headers['x-keep']).toBe('1');
    } finally {
      await other.close();
    }
  });

  it("a redirect that drops credentials changes that request's headers only: the job's other requests keep them", async () => {
    // The job's headers are one object shared by its requests until one must change them.
    const other = await startOrigin();
    try {
      const options = testOptions({ headers: { authorization: 'Bearer s3cret' } });
      const target = encodeURIComponent(`${other.url}/echo`);
      const first = await engine.fetcher.fetch({ index: 0, url: url(`/to?location=${target}`) }, options);
      expect(JSON.parse(first.body!.toString()).headers.authorization).toBeUndefined();
      const second = await engine.fetcher.fetch({ index: 1, url: url('/echo') }, options);
      expect(JSON.parse(second.body!.toString()).headers.authorization).toBe('Bearer s3cret');
      const withOwn = await engine.fetcher.fetch({ index: 2, url: url('/echo'), headers: { 'X-Item': 'a' } }, options);
      expect(JSON.parse(withOwn.body!.toString()).headers).toMatchObject({ authorization: 'Bearer s3cret', 'x-item': 'a' });
      const third = await engine.fetcher.fetch({ index: 3, url: url('/echo') }, options);
      expect(JSON.parse(third.body!.toString()).headers['x-item']).toBeUndefined();
    } finally {
      await other.close();
    }
  });

  it('gives invalid_url for a redirect to a scheme fanout does not fetch', async () => {
    const { record } = await engine.fetch(url(`/to?location=${encodeURIComponent('ftp://example.com/x')}`));
    expect(record).toMatchObject({ ok: false, status: 302, error: { code: 'invalid_url' } });
  });
});

describe('retries', () => {
  it('retries 503 twice then succeeds on the third attempt', async () => {
    const { record } = await engine.fetch(url('/flaky?fails=2&k=a'));
    expect(record).toMatchObject({ ok: true, status: 200, attempts: 3 });
  });

  it('gives up after `retries` extra attempts and records the last response', async () => {
    const { record } = await engine.fetch(url('/flaky?fails=5&k=b'), { retries: 1 });
    expect(record).toMatchObject({ ok: false, status: 503, attempts: 2, error: null });
  });

  it('honours Retry-After in seconds', async () => {
    const t0 = Date.now();
    const { record } = await engine.fetch(url('/retry-after?times=1&after=1&k=s'));
    expect(record).toMatchObject({ ok: true, attempts: 2 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it('honours Retry-After as an HTTP-date', async () => {
    const t0 = Date.now();
    const { record } = await engine.fetch(url('/retry-after?times=1&after=2&date=1&k=d'));
    expect(record).toMatchObject({ ok: true, attempts: 2 });
    // HTTP-dates have whole seconds: the wait is between 1 and 2 s
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it('caps Retry-After at retryMaxDelayMs', async () => {
    const t0 = Date.now();
    const { record } = await engine.fetch(url('/retry-after?times=1&after=3600&k=c'), { retryMaxDelayMs: 100 });
    expect(record).toMatchObject({ ok: true, attempts: 2 });
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('does not retry with retries=0', async () => {
    const { record } = await engine.fetch(url('/flaky?fails=1&k=z'), { retries: 0 });
    expect(record).toMatchObject({ status: 503, attempts: 1 });
  });

  it('backs off exponentially with full jitter, capped', () => {
    expect(backoffMs(1, 100, 10_000, undefined, () => 1)).toBe(100);
    expect(backoffMs(4, 100, 10_000, undefined, () => 1)).toBe(800);
    expect(backoffMs(20, 100, 10_000, undefined, () => 1)).toBe(10_000);
    expect(backoffMs(3, 100, 10_000, undefined, () => 0.5)).toBe(200);
    expect(backoffMs(3, 100, 10_000, 5_000)).toBe(5_000);
    expect(retryAfterMs('7')).toBe(7_000);
    expect(retryAfterMs(new Date(Date.now() + 10_000).toUTCString())).toBeGreaterThan(8_000);
    expect(retryAfterMs('soon')).toBeUndefined();
  });
});

describe('network errors', () => {
  let hangServer: Server;
  let hangPort: number;
  const hung = new Set<import('node:net').Socket>();
  beforeAll(async () => {
    hangServer = createTcpServer((socket) => hung.add(socket)); // accepts, never answers
    await new Promise<void>((r) => hangServer.listen(0, '127.0.0.1', r));
    hangPort = (hangServer.address() as AddressInfo).port;
  });
  afterAll(async () => {
    for (const socket of hung) socket.destroy();
    await new Promise<void>((r) => hangServer.close(() => r()));
  });

  it('connect: nobody listening, retried', async () => {
    const closed = createTcpServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const { record } = await engine.fetch(`http://127.0.0.1:${port}/`, { retries: 1 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 2, error: { code: 'connect' } });
  });

  it('timeout: slow headers past the whole-attempt deadline', async () => {
    const t0 = Date.now();
    const { record } = await engine.fetch(url('/slow-headers?ms=5000'), { timeoutMs: 300, retries: 0 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'timeout' } });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('timeout: a body trickling a byte at a time is cut by the deadline, not by a body timer', async () => {
    const { record } = await engine.fetch(url('/trickle?every=50'), { timeoutMs: 400, retries: 0 });
    expect(record).toMatchObject({ ok: false, status: 200, error: { code: 'timeout' } });
  });

  it('timeout: a server that accepts and never answers', async () => {
    const { record } = await engine.fetch(`http://127.0.0.1:${hangPort}/`, { timeoutMs: 300, retries: 1 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 2, error: { code: 'timeout' } });
  });

  it('reset: the connection is closed before any response', async () => {
    const { record } = await engine.fetch(url('/reset'), { retries: 1 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 2, error: { code: 'reset' } });
  });

  it('reset: the connection is reset in the middle of the body', async () => {
    const { record } = await engine.fetch(url('/reset-mid'), { retries: 0 });
    expect(record).toMatchObject({ ok: false, status: 200, error: { code: 'reset' } });
  });

  it('reset: a body shorter than its Content-Length, then a clean close, is retried for GET and says how far it got', async () => {
    const { record } = await engine.fetch(url('/short'), { retries: 2 });
    expect(record).toMatchObject({
      ok: false,
      status: 200,
      attempts: 3,
      error: { code: 'reset', message: 'connection closed mid-body after 10 of 100 bytes' },
    });
  });

  it('reset: a short body is not retried for POST, whose effect could be repeated', async () => {
    const { record } = await engine.fetch(url('/short?post=1'), { retries: 2, method: 'POST', body: 'x' });
    expect(record).toMatchObject({ ok: false, status: 200, attempts: 1, error: { code: 'reset' } });
  });

  it('protocol: an answer that is not HTTP', async () => {
    const { record } = await engine.fetch(url('/garbage'), { retries: 2 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'protocol' } });
  });

  it('protocol: a body that does not decode as its Content-Encoding says', async () => {
    const { record } = await engine.fetch(url('/bad-gzip'));
    expect(record).toMatchObject({ ok: false, status: 200, attempts: 1, error: { code: 'protocol' } });
  });

  it('dns: a name that does not resolve, not retried', async () => {
    const notFound = Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.invalid'), { code: 'ENOTFOUND' });
    const dnsEngine = openFetcher(undefined, (_host, _options, callback) => callback(notFound, ''));
    try {
      const { record } = await dnsEngine.fetch('http://nowhere.invalid/', { retries: 2 });
      expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'dns' } });
    } finally {
      await dnsEngine.close();
    }
  });

  it('cancelled: aborting the signal ends the item at once with `cancelled`', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const t0 = Date.now();
    const { record } = await engine.fetch(url('/hang'), { timeoutMs: 10_000 }, {}, controller.signal);
    expect(record).toMatchObject({ ok: false, error: { code: 'cancelled' } });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('tls: a self-signed certificate is refused, not retried', async () => {
    // A test fixture made for this test only (CN=localhost, 127.0.0.1), not a secret of anything.
    const fixtures = new URL('./fixtures/', import.meta.url);
    const server = createHttpsServer(
      { key: readFileSync(new URL('self-signed.key', fixtures)), cert: readFileSync(new URL('self-signed.crt', fixtures)) },
      (_req, res) => res.end('secret'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const { record } = await engine.fetch(`https://127.0.0.1:${port}/`, { retries: 2 });
      expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'tls' } });
      expect(record.error!.message).toMatch(/self.signed/i);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('bodies', () => {
  it('decodes gzip, br and both deflate forms', async () => {
    for (const path of ['/gzip?size=5000', '/br?size=5000', '/deflate?size=5000', '/deflate?size=5000&raw=1']) {
      const { record, body } = await engine.fetch(url(path));
      expect(record, path).toMatchObject({ ok: true, bytes: 5000, truncated: false });
      expect(body!.toString()).toMatch(/^([gbd])\1{4999}$/);
    }
  });

  it('cuts a body at maxBodyBytes and says so', async () => {
    const { record, body } = await engine.fetch(url('/ok?size=5000'), { maxBodyBytes: 1000 });
    expect(record).toMatchObject({ ok: true, bytes: 1000, truncated: true });
    expect(body!.length).toBe(1000);
  });

  it('applies maxBodyBytes to the decoded size: gzip and brotli bombs are cut, not inflated', async () => {
    for (const kind of ['gzip', 'br']) {
      const before = process.memoryUsage().rss;
      const { record, body } = await engine.fetch(url(`/bomb?kind=${kind}`), { maxBodyBytes: 1024 * 1024 });
      expect(record, kind).toMatchObject({ ok: true, status: 200, bytes: 1024 * 1024, truncated: true });
      expect(body!.length).toBe(1024 * 1024);
      expect(process.memoryUsage().rss - before).toBeLessThan(100 * 1024 * 1024);
    }
  });

  it('cuts a 64 MiB body at the limit without reading it all', async () => {
    const { record } = await engine.fetch(url('/big?mb=64'), { maxBodyBytes: 65536, bodies: 'none' });
    expect(record).toMatchObject({ ok: true, bytes: 65536, truncated: true });
  });

  it('maxBodyBytes 0 keeps nothing and marks any body truncated', async () => {
    const { record } = await engine.fetch(url('/ok?size=10'), { maxBodyBytes: 0 });
    expect(record).toMatchObject({ bytes: 0, truncated: true });
  });

  it('encodes text by its charset as UTF-8, and binary or undecodable bytes as base64', async () => {
    const latin = await engine.fetch(url('/latin1'));
    expect(encodeBody(latin.body!, latin.contentType, false)).toEqual({ body: 'café crème', bodyEncoding: 'utf8' });
    const binary = await engine.fetch(url('/binary?size=64'));
    const encoded = encodeBody(binary.body!, binary.contentType, false);
    expect(encoded.bodyEncoding).toBe('base64');
    expect(Buffer.from(encoded.body, 'base64').equals(binary.body!)).toBe(true);
    const bad = await engine.fetch(url('/bad-utf8'));
    expect(encodeBody(bad.body!, bad.contentType, false).bodyEncoding).toBe('base64');
  });

  it('drops a multi-byte character split by the cut instead of giving up on the text', () => {
    const text = Buffer.from('héllo wörld', 'utf8');
    const cut = text.subarray(0, 2); // 'h' and half of 'é'
    expect(encodeBody(cut, 'text/plain; charset=utf-8', true)).toEqual({ body: 'h', bodyEncoding: 'utf8' });
  });
});
