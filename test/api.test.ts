import { OpenAPIHono } from '@hono/zod-openapi';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { UploadTarget } from '../functions/api/deps.ts';
import { docsRoutes } from '../functions/api/routes/meta.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { SecretUnavailableError } from '../functions/core/errors.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

const TOKEN = 'test-token-abc123';
let origin: Origin;
let runtime: EmbeddedRuntime;
let app: ReturnType<typeof createApp>;

const uploads: UploadTarget = {
  receivesPut: true,
  async target(id, url) {
    return { url: `${url.origin}/uploads/${id}`, method: 'PUT', headers: { 'content-type': 'text/plain' }, expiresAt: null };
  },
};

beforeAll(async () => {
  origin = await startOrigin();
  runtime = new EmbeddedRuntime({
    dataDir: tempDir(),
    guard: new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }),
    callbackSecret: 'cb-secret',
  });
  runtime.start();
  app = createApp({
    store: runtime.store,
    queue: runtime.queue,
    token: () => TOKEN,
    uploads,
    cancel: (id) => runtime.cancel(id),
    limits: { maxRequestBytes: 64 * 1024, maxUploadBytes: 1024 * 1024 },
  });
});
afterAll(async () => {
  await runtime.stop();
  await origin.close();
});

const auth = { authorization: `Bearer ${TOKEN}` };

function call(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  return app.request(`http://fanout.test${path}`, { method, body, headers: { ...auth, ...headers } });
}

async function submit(body: string, contentType = 'text/plain', query = '') {
  const res = await call('POST', `/jobs${query}`, body, { 'content-type': contentType });
  return { res, json: (await res.json()) as Record<string, unknown> };
}

async function waitDone(jobId: string) {
  for (let i = 0; i < 200; i++) {
    const status = (await (await call('GET', `/jobs/${jobId}`)).json()) as { state: string };
    if (status.state === 'completed' || status.state === 'cancelled') return status as Record<string, unknown>;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${jobId} did not finish`);
}

async function records(jobId: string, query = '') {
  const res = await call('GET', `/jobs/${jobId}/results${query}`);
  expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
  const text = await res.text();
  return text.trim() === '' ? [] : text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function jobCount(): Promise<number> {
  return (await runtime.store.listPrefixes('jobs/')).length;
}

async function expectProblem(res: Response, status: number, detail: RegExp) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = (await res.json()) as { title: string; status: number; detail: string };
  expect(body.status).toBe(status);
  expect(body.title).toBeTruthy();
  expect(body.detail).toMatch(detail);
  return body as Record<string, unknown>;
}

describe('submitting and reading a job', () => {
  it('text/plain: 202 with Location, then status, then records in input order', async () => {
    const urls = [`${origin.url}/ok?size=3`, `${origin.url}/status?code=404`, `${origin.url}/redirect?n=1`];
    const { res, json } = await submit(urls.join('\n'));
    expect(res.status).toBe(202);
    expect(res.headers.get('location')).toBe(`/jobs/${json.jobId}`);
    expect(json).toMatchObject({ status: `/jobs/${json.jobId}`, total: 3, chunks: 1 });
    const status = await waitDone(json.jobId as string);
    expect(status).toMatchObject({ state: 'completed', total: 3, done: 3, succeeded: 2, failed: 1, byStatus: { 200: 2, 404: 1 } });
    const all = await records(json.jobId as string);
    expect(all.map((r) => [r.index, r.url])).toEqual(urls.map((u, i) => [i, u]));
    expect(await records(json.jobId as string, '?ok=false')).toHaveLength(1);
    expect((await records(json.jobId as string, '?status=404'))[0]).toMatchObject({ index: 1 });
    expect(await records(json.jobId as string, '?error=timeout')).toEqual([]);
  });

  it('NDJSON with per-item fields, options as query parameters', async () => {
    const body = [`{"url":"${origin.url}/echo","id":"first","method":"PUT","body":"b"}`, `{"url":"${origin.url}/ok","id":2}`].join('\n');
    const { res, json } = await submit(body, 'application/x-ndjson', '?retries=0&bodies=inline&header=x-api:%20yes');
    expect(res.status).toBe(202);
    await waitDone(json.jobId as string);
    const [echo, second] = await records(json.jobId as string);
    expect(echo).toMatchObject({ id: 'first', ok: true });
    expect(JSON.parse(echo!.body as string)).toMatchObject({ method: 'PUT', body: 'b', headers: { 'x-api': 'yes' } });
    expect(second).toMatchObject({ id: 2 });
  });

  it('JSON {"urls", "options"}; query parameters override the body', async () => {
    const body = JSON.stringify({ urls: [`${origin.url}/ok`, { url: `${origin.url}/ok?b`, id: 'b' }], options: { chunkSize: 1, retries: 4 } });
    const { res, json } = await submit(body, 'application/json', '?retries=1');
    expect(res.status).toBe(202);
    expect(json).toMatchObject({ total: 2, chunks: 2 });
    const job = JSON.parse((await runtime.store.get(`jobs/${json.jobId}/job.json`))!.toString());
    expect(job.options).toMatchObject({ chunkSize: 1, retries: 1 });
  });

  it('lists jobs newest first, with a cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await submit(`${origin.url}/ok?page=${i}`)).json.jobId as string);
    const first = (await (await call('GET', '/jobs?limit=2')).json()) as { jobs: { jobId: string }[]; next: string };
    expect(first.jobs.map((j) => j.jobId)).toEqual([ids[2], ids[1]]);
    const second = (await (await call('GET', `/jobs?limit=2&cursor=${first.next}`)).json()) as { jobs: { jobId: string }[] };
    expect(second.jobs[0]!.jobId).toBe(ids[0]);
    await expectProblem(await call('GET', '/jobs?limit=1000'), 400, /limit/);
  });
});

describe('bad requests: problem+json naming the line or field, and nothing created', () => {
  const cases: [string, () => Promise<Response> | Response, number, RegExp, Record<string, unknown>?][] = [
    ['a non-http line', () => call('POST', '/jobs', 'http://a.test/\n\nftp://b.test/', { 'content-type': 'text/plain' }), 400, /^line 3: unsupported scheme "ftp:"/, { line: 3 }],
    ['malformed JSON', () => call('POST', '/jobs', '{"urls": [\n"http://a.test/",,\n]}', { 'content-type': 'application/json' }), 400, /not valid JSON/, { line: 2 }],
    ['a bad NDJSON line', () => call('POST', '/jobs', '{"url":"http://a.test/"}\n{"url":5}', { 'content-type': 'application/x-ndjson' }), 400, /^line 2: /, { line: 2 }],
    ['an unknown option', () => call('POST', '/jobs?concurency=3', 'http://a.test/', { 'content-type': 'text/plain' }), 400, /unknown option "concurency"/, { field: 'concurency' }],
    ['an option out of range', () => call('POST', '/jobs?concurrency=0', 'http://a.test/', { 'content-type': 'text/plain' }), 400, /option "concurrency"/, { field: 'concurrency' }],
    ['a bad option in the body', () => call('POST', '/jobs', JSON.stringify({ urls: ['http://a.test/'], options: { bodies: 'all' } }), { 'content-type': 'application/json' }), 400, /option "bodies"/, { field: 'bodies' }],
    ['an unknown field', () => call('POST', '/jobs', JSON.stringify({ urls: ['http://a.test/'], extra: 1 }), { 'content-type': 'application/json' }), 400, /unknown field "extra"/],
    ['header injection', () => call('POST', '/jobs', `{"url":"http://a.test/","headers":{"x":"1\\r\\nHost: evil"}}`, { 'content-type': 'application/x-ndjson' }), 400, /CR, LF/],
    ['header injection in a query option', () => call('POST', '/jobs?header=x-a:%20b%0D%0AHost:%20evil', 'http://a.test/', { 'content-type': 'text/plain' }), 400, /CR, LF/, { field: 'headers.x-a' }],
    ['an empty list', () => call('POST', '/jobs', '# nothing\n', { 'content-type': 'text/plain' }), 400, /no URL/],
    ['a too-large body', () => call('POST', '/jobs', 'http://a.test/\n'.repeat(5000), { 'content-type': 'text/plain' }), 413, /POST \/uploads/],
    ['an unsupported content type', () => call('POST', '/jobs', 'http://a.test/', { 'content-type': 'application/x-www-form-urlencoded' }), 415, /text\/plain/],
    ['an unknown job', () => call('GET', '/jobs/01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f'), 404, /no job/],
    ['a malformed job id', () => call('GET', '/jobs/not-a-job'), 400, /malformed job id/],
    ['a traversing job id', () => call('GET', '/jobs/..%2F..%2Fetc/results'), 400, /malformed job id/],
    ['cancel of an unknown job', () => call('DELETE', '/jobs/01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f'), 404, /no job/],
    ['an unknown upload', () => call('POST', '/jobs', JSON.stringify({ upload: '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f' }), { 'content-type': 'application/json' }), 409, /nothing was uploaded/],
    ['a traversing upload id', () => call('POST', '/jobs', JSON.stringify({ upload: '../jobs' }), { 'content-type': 'application/json' }), 400, /malformed upload id/],
    ['an unknown route', () => call('GET', '/nope'), 404, /no route GET \/nope/],
  ];
  it.each(cases)('%s', async (_name, request, status, detail, extra) => {
    const before = await jobCount();
    const body = await expectProblem(await request(), status, detail);
    if (extra) expect(body).toMatchObject(extra);
    expect(await jobCount()).toBe(before);
  });
});

describe('authentication', () => {
  const id = '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f';
  const routes: [string, string][] = [
    ['POST', '/jobs'],
    ['GET', '/jobs'],
    ['GET', `/jobs/${id}`],
    ['GET', `/jobs/${id}/results`],
    ['DELETE', `/jobs/${id}`],
    ['POST', '/uploads'],
    ['PUT', `/uploads/${id}`],
    ['GET', '/schedules'],
  ];
  it.each(routes)('%s %s needs the bearer token', async (method, path) => {
    const url = `http://fanout.test${path}`;
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-token' }, { authorization: 'Basic dXNlcjpwYXNz' }, { authorization: TOKEN }]) {
      const res = await app.request(url, { method, headers, body: method === 'POST' || method === 'PUT' ? 'x' : undefined });
      await expectProblem(res, 401, /Bearer/i);
    }
  });

  it('/health, the dashboard shell and the API description need none', async () => {
    for (const path of ['/health', '/', '/openapi.json', '/docs']) {
      expect((await app.request(`http://fanout.test${path}`)).status, path).toBe(200);
    }
  });

  it('a token that cannot be read just now (Secrets Manager timing out) is 503 with Retry-After; one that is misconfigured is 500; neither is a way in', async () => {
    const appWith = (error: Error) =>
      createApp({
        store: runtime.store,
        queue: runtime.queue,
        token: async () => {
          throw error;
        },
        uploads,
        cancel: (j) => runtime.cancel(j),
      });
    const spy = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const transient = await appWith(new SecretUnavailableError('Secrets Manager did not answer within 5000 ms (timeout)')).request('http://fanout.test/jobs', { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(transient.status).toBe(503);
      expect(transient.headers.get('content-type')).toMatch(/application\/problem\+json/);
      expect(transient.headers.get('retry-after')).toBe('5');
      expect(await transient.json()).toMatchObject({ status: 503, detail: 'the API token could not be read just now; try again shortly' });
      // An empty secret, no access, no such secret: retrying does not help, and the detail says nothing of it.
      const broken = await appWith(new Error('AccessDeniedException: arn:aws:secretsmanager:us-east-1:1:secret:t')).request('http://fanout.test/jobs', { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(broken.status).toBe(500);
      expect(broken.headers.get('retry-after')).toBeNull();
      const body = await broken.text();
      expect(body).toContain("the API token is not configured correctly; the API's log says why");
      expect(body).not.toContain('arn:aws');
    } finally {
      spy.mockRestore();
    }
  });

  it('reads the token once per request: a read that fails just after one that succeeded does not turn a valid request into a 500', async () => {
    let reads = 0;
    const flaky = createApp({
      store: runtime.store,
      queue: runtime.queue,
      // The first read answers; a second one (in the same request) would fail.
      token: async () => {
        if (++reads % 2 === 0) throw new SecretUnavailableError('throttled');
        return TOKEN;
      },
      uploads,
      cancel: (j) => runtime.cancel(j),
    });
    const res = await flaky.request('http://fanout.test/jobs', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(reads).toBe(1);
  });

  it('without a configured token, no route asks for one', async () => {
    const open = createApp({ store: runtime.store, queue: runtime.queue, token: () => undefined, uploads, cancel: (j) => runtime.cancel(j) });
    expect((await open.request('http://fanout.test/jobs')).status).toBe(200);
  });
});

describe('cancel', () => {
  it('DELETE stops a job of hanging URLs within seconds; every URL gets a record; a second DELETE is 409', async () => {
    const urls = Array.from({ length: 200 }, (_, i) => `${origin.url}/hang?i=${i}`);
    const { json } = await submit(urls.join('\n'), 'text/plain', '?chunkSize=50&timeoutMs=60000&concurrency=20');
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const res = await call('DELETE', `/jobs/${json.jobId}`);
    expect([200, 202]).toContain(res.status); // 200 when it ended within CANCEL_ROUTE_DEFAULTS.settleMs
    const status = await waitDone(json.jobId as string);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(status).toMatchObject({ state: 'cancelled', total: 200, done: 200, byError: { cancelled: 200 } });
    expect(await records(json.jobId as string)).toHaveLength(200);
    await expectProblem(await call('DELETE', `/jobs/${json.jobId}`), 409, /already ended/);
  });
});

describe('uploads', () => {
  it('POST /uploads, PUT the list, POST /jobs {"upload"}', async () => {
    const created = await call('POST', '/uploads');
    expect(created.status).toBe(201);
    const upload = (await created.json()) as { uploadId: string; url: string; method: string };
    expect(upload.url).toBe(`http://fanout.test/uploads/${upload.uploadId}`);
    const list = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?u=${i}`).join('\n');
    expect((await call('PUT', `/uploads/${upload.uploadId}`, list)).status).toBe(204);
    await expectProblem(await call('PUT', `/uploads/${upload.uploadId}`, list), 409, /already received/);
    const { res, json } = await submit(JSON.stringify({ upload: upload.uploadId, options: { chunkSize: 10 } }), 'application/json');
    expect(res.status).toBe(202);
    expect(json).toMatchObject({ total: 30, chunks: 3 });
    expect(await waitDone(json.jobId as string)).toMatchObject({ done: 30, succeeded: 30 });
  });

  it('refuses a PUT to an upload that was never made, and an oversized upload', async () => {
    await expectProblem(await call('PUT', '/uploads/01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f', 'x'), 404, /no upload/);
    const { uploadId } = (await (await call('POST', '/uploads')).json()) as { uploadId: string };
    await expectProblem(await call('PUT', `/uploads/${uploadId}`, 'x'.repeat(1024 * 1024 + 1)), 413, /at most/);
  });
});

describe('completion callback', () => {
  it('POSTs the final status, signed with HMAC-SHA256 over timestamp.body', async () => {
    const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.end('thanks');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const { json } = await submit(JSON.stringify({ urls: [`${origin.url}/ok`], options: { callbackUrl } }), 'application/json');
      await waitDone(json.jobId as string);
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(received).toHaveLength(1);
      const [{ headers, body }] = received as [(typeof received)[0]];
      expect(JSON.parse(body)).toMatchObject({ jobId: json.jobId, state: 'completed', done: 1 });
      const expected = createHmac('sha256', 'cb-secret').update(`${headers['x-fanout-timestamp']}.${body}`).digest('hex');
      expect(headers['x-fanout-signature']).toBe(`sha256=${expected}`);
    } finally {
      receiver.close();
    }
  });

  it('a callback to a private address is blocked by the guard', async () => {
    const deliveries: { jobId: string; code: string | undefined }[] = [];
    runtime.on('callback', (jobId, record) => deliveries.push({ jobId, code: record.error?.code }));
    const { json } = await submit(JSON.stringify({ urls: [`${origin.url}/ok`], options: { callbackUrl: 'http://127.0.0.2:9/hook' } }), 'application/json');
    await waitDone(json.jobId as string);
    for (let i = 0; i < 100 && !deliveries.some((d) => d.jobId === json.jobId); i++) await new Promise((r) => setTimeout(r, 20));
    expect(deliveries.find((d) => d.jobId === json.jobId)).toEqual({ jobId: json.jobId, code: 'blocked' });
  });
});

describe('the API description', () => {
  it('documents every route', async () => {
    const doc = (await (await app.request('http://fanout.test/openapi.json')).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual(['/health', '/jobs', '/jobs/{id}', '/jobs/{id}/results', '/schedules', '/schedules/{name}/runs', '/uploads', '/uploads/{id}']);
    expect(Object.keys(doc.paths['/jobs']!).sort()).toEqual(['get', 'post']);
    expect(Object.keys(doc.paths['/jobs/{id}']!).sort()).toEqual(['delete', 'get']);
  });

  it('lists every job option from the options schema, with its range, default and help', async () => {
    const { jobOptionsSchema, DEFAULT_OPTIONS, OPTION_HELP } = await import('../functions/core/options.ts');
    type Param = { name: string; in: string; schema: { minimum?: number; maximum?: number; default?: unknown }; description?: string };
    const doc = (await (await app.request('http://fanout.test/openapi.json')).json()) as { paths: Record<string, Record<string, { parameters?: Param[] }>> };
    const params = new Map(doc.paths['/jobs']!.post!.parameters!.map((p) => [p.name, p]));
    for (const name of Object.keys(jobOptionsSchema.shape)) {
      if (name === 'headers' || name === 'headerEnv') continue; // as repeatable `header=` / `headerEnv=`
      const param = params.get(name);
      expect(param, name).toBeDefined();
      expect(param!.description ?? (param!.schema as { description?: string }).description, name).toBe(OPTION_HELP[name as keyof typeof OPTION_HELP]);
      const fallback = (DEFAULT_OPTIONS as Record<string, unknown>)[name];
      if (typeof fallback === 'number') expect(param!.schema, name).toMatchObject({ default: fallback, minimum: expect.any(Number), maximum: expect.any(Number) });
    }
    expect([...params.keys()]).toEqual(expect.arrayContaining(['header', 'headerEnv']));
  });
});

describe('a /docs asset whose read failed (the package being reinstalled under serve)', () => {
  it('is read again on the next request, not kept failing until a restart', async () => {
    const dir = tempDir('fanout-swagger-');
    const docs = new OpenAPIHono();
    docs.route('/', docsRoutes(new OpenAPIHono(), dir));
    docs.onError((_e, c) => c.text('error', 500));
    expect((await docs.request('/docs/swagger-ui.css')).status).toBe(500);
    writeFileSync(join(dir, 'swagger-ui.css'), 'body{}');
    expect((await docs.request('/docs/swagger-ui.css')).status).toBe(200);
  });
});
