/**
 * GET /jobs/:id/results in pages (issue 10): a cursor in input order, pages bounded by records and
 * bytes, the next page in a Link header with the filters kept; the CLI client follows pages and
 * links; a running job's results say they are partial; bad filters and cursors are 400s.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { ApiDeps, UploadTarget } from '../functions/api/deps.ts';
import { FanoutClient, nextCursor } from '../functions/cli/client.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { decodeCursor, encodeCursor, escapedBytes, readResultPage, type ResultPosition } from '../functions/core/results.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

const TOKEN = 'pages-token';
const auth = { authorization: `Bearer ${TOKEN}` };
let origin: Origin;
let runtime: EmbeddedRuntime;

const uploads: UploadTarget = {
  receivesPut: true,
  async target(id, url) {
    return { url: `${url.origin}/uploads/${id}`, method: 'PUT', headers: { 'content-type': 'text/plain' }, expiresAt: null };
  },
};

function makeApp(extra: Partial<ApiDeps> = {}) {
  return createApp({ store: runtime.store, queue: runtime.queue, token: () => TOKEN, uploads, cancel: (id) => runtime.cancel(id), ...extra });
}

beforeAll(async () => {
  origin = await startOrigin();
  runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }) });
  runtime.start();
});
afterAll(async () => {
  await runtime.stop();
  await origin.close();
});

async function waitDone(app: ReturnType<typeof createApp>, jobId: string) {
  for (let i = 0; i < 400; i++) {
    const status = (await (await app.request(`/jobs/${jobId}`, { headers: auth })).json()) as { state: string };
    if (status.state === 'completed' || status.state === 'cancelled') return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`job ${jobId} did not finish`);
}

/** A finished job of `n` URLs in chunks of `chunkSize`; record i has a body of (i % 7) * 40 bytes. */
async function finishedJob(app: ReturnType<typeof createApp>, n: number, chunkSize: number): Promise<string> {
  const urls = Array.from({ length: n }, (_, i) => (i % 5 === 4 ? `${origin.url}/status?code=404&i=${i}` : `${origin.url}/ok?size=${(i % 7) * 40}&i=${i}`));
  const res = await app.request(`/jobs?chunkSize=${chunkSize}&retries=0`, { method: 'POST', body: urls.join('\n'), headers: { ...auth, 'content-type': 'text/plain' } });
  expect(res.status).toBe(202);
  const { jobId } = (await res.json()) as { jobId: string };
  await waitDone(app, jobId);
  return jobId;
}

interface Page {
  status: number;
  lines: string[];
  bytes: number;
  link: string | null;
  cursor: string | null;
  headers: Headers;
}

async function page(app: ReturnType<typeof createApp>, path: string): Promise<Page> {
  const res = await app.request(path, { headers: auth });
  const text = await res.text();
  return {
    status: res.status,
    lines: text === '' ? [] : text.replace(/\n$/, '').split('\n'),
    bytes: text.split('\n').filter(Boolean).reduce((sum, line) => sum + escapedBytes(line) + 1, 0),
    link: res.headers.get('link'),
    cursor: res.headers.get('fanout-next-cursor'),
    headers: res.headers,
  };
}

/** Follows the Link headers from `first`, returning every page. */
async function allPages(app: ReturnType<typeof createApp>, first: string): Promise<Page[]> {
  const pages: Page[] = [];
  for (let path: string | null = first; path; ) {
    const p = await page(app, path);
    expect(p.status).toBe(200);
    pages.push(p);
    path = p.link ? /^<([^>]+)>; rel="next"$/.exec(p.link)![1]! : null;
    expect(pages.length).toBeLessThan(500);
  }
  return pages;
}

describe('result pages', () => {
  it('pages a job of several chunks by records: every record once, in input order, the last page without a Link', async () => {
    const app = makeApp({ resultPages: { maxRecords: 7, maxBytes: 1 << 20 } });
    const jobId = await finishedJob(app, 53, 10);
    const pages = await allPages(app, `/jobs/${jobId}/results`);
    expect(pages.map((p) => p.lines.length)).toEqual([7, 7, 7, 7, 7, 7, 7, 4]);
    const indexes = pages.flatMap((p) => p.lines.map((l) => JSON.parse(l).index));
    expect(indexes).toEqual(Array.from({ length: 53 }, (_, i) => i));
    expect(pages.at(-1)!.link).toBeNull();
    expect(pages.at(-1)!.cursor).toBeNull();
    expect(pages[0]!.headers.get('fanout-complete')).toBe('true');
    // the Link and the cursor header agree, and the cursor is opaque base64url
    expect(pages[0]!.link).toBe(`</jobs/${jobId}/results?cursor=${pages[0]!.cursor}>; rel="next"`);
    expect(decodeCursor(pages[0]!.cursor!)).toEqual({ kind: 'records', chunk: 0, position: 7 });
  });

  it('pages by bytes too: no page above the byte bound unless one record fills it alone', async () => {
    const maxBytes = 1500;
    const app = makeApp({ resultPages: { maxRecords: 10_000, maxBytes } });
    const jobId = await finishedJob(app, 40, 6);
    const pages = await allPages(app, `/jobs/${jobId}/results`);
    expect(pages.length).toBeGreaterThan(3);
    for (const p of pages) {
      expect(p.lines.length).toBeGreaterThan(0);
      if (p.lines.length > 1) expect(p.bytes).toBeLessThanOrEqual(maxBytes);
    }
    expect(pages.flatMap((p) => p.lines.map((l) => JSON.parse(l).index))).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it('a page out of time ends at the next chunk boundary, and the pages still hold every record', async () => {
    const app = makeApp();
    const jobId = await finishedJob(app, 22, 5);
    const sizes: number[] = [];
    const indexes: number[] = [];
    for (let at: ResultPosition | null = { chunk: 0, position: 0 }; at; ) {
      const page = await readResultPage(runtime.store, jobId, at, { maxRecords: 1000, maxBytes: 1 << 20, maxMillis: 0 });
      sizes.push(page.lines.length);
      indexes.push(...page.lines.map((l) => JSON.parse(l).index));
      at = page.next;
    }
    expect(sizes).toEqual([5, 5, 5, 5, 2]);
    expect(indexes).toEqual(Array.from({ length: 22 }, (_, i) => i));
  });

  it('keeps the filters in the next link and returns only matching records', async () => {
    const app = makeApp({ resultPages: { maxRecords: 3, maxBytes: 1 << 20 } });
    const jobId = await finishedJob(app, 50, 10);
    const pages = await allPages(app, `/jobs/${jobId}/results?ok=false&status=404`);
    for (const p of pages.slice(0, -1)) expect(p.link).toMatch(/[?&]ok=false&status=404&cursor=/);
    const indexes = pages.flatMap((p) => p.lines.map((l) => JSON.parse(l).index));
    expect(indexes).toEqual(Array.from({ length: 10 }, (_, i) => i * 5 + 4));
  });

  it('fanout serve streams everything without cursor or limit, and pages when asked with limit', async () => {
    const app = makeApp();
    const jobId = await finishedJob(app, 25, 4);
    const all = await page(app, `/jobs/${jobId}/results`);
    expect(all.lines).toHaveLength(25);
    expect(all.link).toBeNull();
    const pages = await allPages(app, `/jobs/${jobId}/results?limit=10`);
    expect(pages.map((p) => p.lines.length)).toEqual([10, 10, 5]);
    expect(pages[0]!.link).toMatch(/limit=10&cursor=/);
    expect(pages.flatMap((p) => p.lines)).toEqual(all.lines);
  });

  it('a running job says its results are partial, with the count so far', async () => {
    const app = makeApp();
    const urls = [`${origin.url}/ok?r=1`, `${origin.url}/ok?r=2`, `${origin.url}/hang?r=3`, `${origin.url}/hang?r=4`];
    const res = await app.request('/jobs?chunkSize=2&timeoutMs=60000&retries=0', { method: 'POST', body: urls.join('\n'), headers: { ...auth, 'content-type': 'text/plain' } });
    const { jobId } = (await res.json()) as { jobId: string };
    try {
      let partial: Page | undefined;
      for (let i = 0; i < 200; i++) {
        partial = await page(app, `/jobs/${jobId}/results`);
        if (partial.lines.length === 2) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(partial!.lines.map((l) => JSON.parse(l).index)).toEqual([0, 1]);
      expect(partial!.headers.get('fanout-complete')).toBe('false');
      expect(partial!.headers.get('fanout-done')).toBe('2');
      expect(partial!.headers.get('fanout-total')).toBe('4');
    } finally {
      await app.request(`/jobs/${jobId}`, { method: 'DELETE', headers: auth });
      await waitDone(app, jobId);
    }
    expect((await page(app, `/jobs/${jobId}/results`)).headers.get('fanout-complete')).toBe('true');
  });

  it.each([
    ['?error=foo', 'error'],
    ['?status=abc', 'status'],
    ['?status=700', 'status'],
    ['?ok=maybe', 'ok'],
    ['?cursor=not-a-cursor!', 'cursor'],
    [`?cursor=${Buffer.from('{"k":"r","c":-1,"p":0}').toString('base64url')}`, 'cursor'],
    [`?cursor=${encodeCursor('records', { chunk: 99, position: 0 })}`, 'cursor'],
    [`?cursor=${encodeCursor('links', { chunk: 0, position: 0 })}`, 'cursor'],
    ['?limit=0', 'limit'],
  ])('refuses %s naming %s', async (query, field) => {
    const app = makeApp();
    const jobId = await finishedJob(app, 2, 1);
    const res = await app.request(`/jobs/${jobId}/results${query}`, { headers: auth });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 400, field });
  });
});

describe('the CLI client', () => {
  let server: ServerType;
  let api: string;
  beforeAll(async () => {
    const app = makeApp({ resultPages: { maxRecords: 4, maxBytes: 1 << 20 } });
    server = await new Promise((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('follows record pages transparently, filters included', async () => {
    const client = new FanoutClient({ api, token: TOKEN });
    const app = makeApp();
    const jobId = await finishedJob(app, 30, 7);
    let text = '';
    for await (const chunk of await client.results(jobId, new URLSearchParams())) text += chunk;
    expect(text.trim().split('\n').map((l) => JSON.parse(l).index)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    text = '';
    for await (const chunk of await client.results(jobId, new URLSearchParams({ ok: 'false' }))) text += chunk;
    expect(text.trim().split('\n').map((l) => JSON.parse(l).index)).toEqual([4, 9, 14, 19, 24, 29]);
  });

  it('reads the next cursor from the Link header when the cursor header is missing', () => {
    expect(nextCursor({ link: '</jobs/x/results?ok=false&cursor=abc_-1>; rel="next"' })).toBe('abc_-1');
    expect(nextCursor({ 'fanout-next-cursor': 'zz', link: '</a?cursor=yy>; rel="next"' })).toBe('zz');
    expect(nextCursor({})).toBeNull();
  });
});

describe('the token goes to the API origin only (issue 14 item 6)', () => {
  interface Recorder {
    server: Server;
    url: string;
    seen: { method: string; path: string; headers: IncomingHttpHeaders }[];
  }
  async function recorder(handle: (path: string, method: string, r: Recorder) => { status: number; type?: string; body: string | Buffer; headers?: Record<string, string> }): Promise<Recorder> {
    const r = { seen: [] } as unknown as Recorder;
    r.server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        r.seen.push({ method: req.method!, path: req.url!, headers: req.headers });
        const out = handle(req.url!, req.method!, r);
        res.writeHead(out.status, { 'content-type': out.type ?? 'application/json', ...out.headers });
        res.end(out.body);
      });
    });
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    r.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}`;
    return r;
  }

  it('an upload URL and result-file links of another host get no Authorization; the API gets it', async () => {
    const jobId = '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f';
    const gz = (lines: object[]) => gzipSync(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const files = await recorder((path) => {
      if (path.startsWith('/put')) return { status: 200, body: '' };
      const n = Number(/f(\d)/.exec(path)![1]);
      return { status: 200, type: 'application/gzip', body: gz([{ index: n * 2, ok: true }, { index: n * 2 + 1, ok: n !== 2 }]) };
    });
    const apiServer = await recorder((path, method) => {
      if (method === 'POST' && path === '/uploads') return { status: 201, body: JSON.stringify({ uploadId: jobId, url: `${files.url}/put/${jobId}?X-Amz-Signature=s`, method: 'PUT', headers: { 'content-type': 'text/plain' }, expiresAt: null }) };
      if (method === 'POST' && path === '/jobs') return { status: 202, body: JSON.stringify({ jobId, status: `/jobs/${jobId}`, total: 6, chunks: 3 }) };
      const cursor = new URL(path, 'http://x').searchParams.get('cursor');
      const chunks = cursor === null ? [0, 1] : [2];
      const next = cursor === null ? 'links-page-2' : null;
      return {
        status: 200,
        body: JSON.stringify({ jobId, format: 'ndjson.gz', files: chunks.map((c) => ({ key: `k${c}`, url: `${files.url}/f${c}?sig=1`, chunk: c })), expiresAt: '', next }),
        headers: next ? { 'fanout-next-cursor': next } : ({} as Record<string, string>),
      };
    });
    try {
      const client = new FanoutClient({ api: apiServer.url, token: 'SECRET-T' });
      const { Readable } = await import('node:stream');
      await client.submitUpload(Readable.from(['http://a.test/\n']), 15, 'text', {});
      let text = '';
      for await (const chunk of await client.results(jobId, new URLSearchParams())) text += chunk;
      expect(text.trim().split('\n').map((l) => JSON.parse(l).index)).toEqual([0, 1, 2, 3, 4, 5]);

      expect(apiServer.seen.map((s) => `${s.method} ${s.path}`)).toEqual(['POST /uploads', 'POST /jobs', `GET /jobs/${jobId}/results`, `GET /jobs/${jobId}/results?cursor=links-page-2`]);
      for (const s of apiServer.seen) expect(s.headers.authorization).toBe('Bearer SECRET-T');
      expect(files.seen.map((s) => s.method)).toEqual(['PUT', 'GET', 'GET', 'GET']);
      for (const s of files.seen) expect(s.headers.authorization, `${s.method} ${s.path}`).toBeUndefined();
      // The list goes up with its length, not chunked: S3 answers a chunked PUT to a presigned URL with 501.
      expect(files.seen[0]!.headers['content-length']).toBe('15');
      expect(files.seen[0]!.headers['transfer-encoding']).toBeUndefined();
    } finally {
      apiServer.server.close();
      files.server.close();
    }
  });
});
