/**
 * The API under hostile input and a full store (issue 14 items 1, 5, 7, 9): oversized lines and
 * documents are 400s naming the line or telling the user to send NDJSON, the server keeps serving;
 * unsendable headers, undecodable userinfo and bodies a worker cannot hold fail the submission;
 * a full store is 507.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { UploadTarget } from '../functions/api/deps.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import type { ObjectStore } from '../functions/core/ports.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { fanout } from './support/cli.ts';
import { tempDir } from './support/tmp.ts';

let runtime: EmbeddedRuntime;
let app: ReturnType<typeof createApp>;
const MiB = 1024 * 1024;

const uploads: UploadTarget = {
  receivesPut: true,
  async target(id, url) {
    return { url: `${url.origin}/uploads/${id}`, method: 'PUT', headers: { 'content-type': 'text/plain' }, expiresAt: null };
  },
};

beforeAll(() => {
  runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: true }) });
  app = createApp({ store: runtime.store, queue: runtime.queue, token: () => undefined, uploads, cancel: (id) => runtime.cancel(id), limits: { maxUploadBytes: 64 * MiB } });
});
afterAll(() => runtime.stop());

async function jobCount(): Promise<number> {
  return (await runtime.store.listPrefixes('jobs/')).length;
}

async function problem(res: Response, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  return (await res.json()) as { detail: string; line?: number; field?: string };
}

/** A body streamed in 64 KiB pieces, as a client sends a large upload. */
function streamed(total: number, piece: (i: number) => string): ReadableStream<Uint8Array> {
  let sent = 0;
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      const bytes = new TextEncoder().encode(piece(i++));
      sent += bytes.length;
      controller.enqueue(bytes);
    },
  });
}

async function uploadAndSubmit(body: ReadableStream<Uint8Array>, format?: string) {
  const { uploadId } = (await (await app.request('/uploads', { method: 'POST' })).json()) as { uploadId: string };
  const put = await app.request(`/uploads/${uploadId}`, { method: 'PUT', body, headers: { 'content-type': 'text/plain' }, duplex: 'half' } as RequestInit);
  expect(put.status).toBe(204);
  return app.request('/jobs', { method: 'POST', body: JSON.stringify({ upload: uploadId, ...(format ? { format } : {}) }), headers: { 'content-type': 'application/json' } });
}

describe('oversized input (issue 14 item 1)', () => {
  it('an uploaded 20 MB list with no newline is a 400 naming line 1, and the server keeps serving', async () => {
    const before = await jobCount();
    const res = await uploadAndSubmit(streamed(20 * MiB, (i) => (i === 0 ? 'http://a.test/' : '') + 'x'.repeat(64 * 1024)));
    const body = await problem(res, 400);
    expect(body).toMatchObject({ line: 1 });
    expect(body.detail).toMatch(/longer than 1048576 bytes/);
    expect(await jobCount()).toBe(before);
    expect((await app.request('/health')).status).toBe(200);
  });

  it('an uploaded 20 MB JSON document is refused, telling the user to send NDJSON', async () => {
    const res = await uploadAndSubmit(streamed(20 * MiB, (i) => (i === 0 ? '{"urls": [' : '"http://a.test/' + 'z'.repeat(64 * 1024) + '",\n')));
    const body = await problem(res, 400);
    expect(body.detail).toMatch(/at most 16777216 bytes.*NDJSON/);
    expect(body.field).toBe('format');
  });

  it('fanout fetch on a 20 MB line exits 2 with the line named and no stack trace', async () => {
    const dir = tempDir();
    const file = join(dir, 'one-line.txt');
    writeFileSync(file, 'http://a.test/' + 'x'.repeat(20 * MiB));
    const run = await fanout(['fetch', file, '--data-dir', join(dir, 'data')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/line 1: line longer than 1048576 bytes/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  }, 30_000);

  it('JSON nested two million levels deep is refused at once, without stalling the server', async () => {
    // Measured before: an 8 MB `[[[...]]]` held the event loop for 5 s and took 1.1 GB.
    const deep = '['.repeat(2_000_000) + ']'.repeat(2_000_000);
    const started = Date.now();
    const [res, health] = await Promise.all([
      app.request('/jobs', { method: 'POST', body: deep, headers: { 'content-type': 'application/json' } }),
      app.request('/health'),
    ]);
    expect((await problem(res, 400)).detail).toMatch(/nested deeper than 32 levels at column 33/);
    expect(health.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2_000);
    const line = `{"url":"http://a.test/","headers":${'{"a":'.repeat(100)}1${'}'.repeat(100)}}`;
    expect(await problem(await app.request('/jobs', { method: 'POST', body: `{"url":"http://b.test/"}\n${line}\n`, headers: { 'content-type': 'application/x-ndjson' } }), 400)).toMatchObject({ line: 2 });
  });

  it('a too-long line in a POSTed list names its line', async () => {
    const body = `http://a.test/\nhttp://b.test/${'q'.repeat(MiB + 1)}\n`;
    expect(await problem(await app.request('/jobs', { method: 'POST', body, headers: { 'content-type': 'text/plain' } }), 400)).toMatchObject({ line: 2 });
  });
});

describe('uploads stream to the store (issue 14 item 1: a 600 MB upload took 1.3 GB)', () => {
  it('a chunked upload reaches the store before it has been received whole, and one past the limit is 413', async () => {
    const total = 8 * MiB;
    let sent = 0;
    let sentAtFirstWrite = -1;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= total) return controller.close();
        sent += 64 * 1024;
        controller.enqueue(new TextEncoder().encode('h'.repeat(64 * 1024)));
      },
    });
    const watching: ObjectStore = Object.create(runtime.store);
    watching.put = async (key, data, options) => {
      if (typeof data === 'string' || data instanceof Uint8Array) return runtime.store.put(key, data, options);
      const watched = (async function* () {
        for await (const chunk of data) {
          if (sentAtFirstWrite < 0) sentAtFirstWrite = sent;
          yield chunk;
        }
      })();
      return runtime.store.put(key, watched, options);
    };
    const small = createApp({ store: watching, queue: runtime.queue, token: () => undefined, uploads, cancel: (id) => runtime.cancel(id), limits: { maxUploadBytes: 4 * MiB } });
    const { uploadId } = (await (await small.request('/uploads', { method: 'POST' })).json()) as { uploadId: string };
    const put = await small.request(`/uploads/${uploadId}`, { method: 'PUT', body, headers: { 'content-type': 'text/plain' }, duplex: 'half' } as RequestInit);
    expect((await problem(put, 413)).detail).toMatch(/at most 4194304 bytes/);
    expect(sentAtFirstWrite).toBeGreaterThan(0);
    expect(sentAtFirstWrite).toBeLessThan(MiB);
    expect(sent).toBeLessThan(total);
    expect(await runtime.store.exists(`uploads/${uploadId}/list`)).toBe(false);
  });
});

describe('submissions that could never be fetched (issue 14 items 7 and 9)', () => {
  const post = (path: string, body: string, type = 'text/plain') => app.request(path, { method: 'POST', body, headers: { 'content-type': type } });
  it.each([
    ['a Host override as a query option', () => post('/jobs?header=Host:%20evil.test', 'http://a.test/'), { field: 'headers.Host' }],
    ['transfer-encoding on an item', () => post('/jobs', '{"url":"http://a.test/","headers":{"Transfer-Encoding":"chunked"}}\n', 'application/x-ndjson'), { line: 1, field: 'headers.Transfer-Encoding' }],
    ['a control character in a header value', () => post('/jobs', JSON.stringify({ urls: ['http://a.test/'], options: { headers: { 'x-k': 'a\u0007b' } } }), 'application/json'), { field: 'headers.x-k' }],
    ['a wrong content-length', () => post('/jobs?method=POST&body=abc&header=content-length:%209', 'http://a.test/'), { field: 'headers.content-length' }],
    ['undecodable userinfo', () => post('/jobs', 'http://a.test/\nhttp://%zz@host.test/\n'), { line: 2 }],
    ['concurrency x maxBodyBytes beyond a worker', () => post('/jobs?concurrency=10000&maxBodyBytes=268435456&bodies=store', 'http://a.test/'), { field: 'maxBodyBytes' }],
    ['an inline maxBodyBytes a record cannot hold', () => post('/jobs?concurrency=1&maxBodyBytes=67108864', 'http://a.test/'), { field: 'maxBodyBytes' }],
  ] as const)('%s is a 400 naming it, and creates nothing', async (_name, request, expected) => {
    const before = await jobCount();
    expect(await problem(await request(), 400)).toMatchObject(expected);
    expect(await jobCount()).toBe(before);
  });
});

describe('a full store (issue 14 item 5)', () => {
  it('POST /jobs answers 507 problem+json and leaves no job', async () => {
    const full: ObjectStore = Object.create(runtime.store);
    full.put = async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
    };
    const fullApp = createApp({ store: full, queue: runtime.queue, token: () => undefined, uploads, cancel: (id) => runtime.cancel(id) });
    const before = await jobCount();
    const body = await problem(await fullApp.request('/jobs', { method: 'POST', body: 'http://a.test/', headers: { 'content-type': 'text/plain' } }), 507);
    expect(body.detail).toMatch(/no space/);
    expect(await jobCount()).toBe(before);
  });
});
