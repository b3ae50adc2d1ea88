/**
 * The AWS API under Lambda's limits (issue 10): every response fits a Lambda payload
 * (JSON.stringify(result) <= 6,291,456 bytes) whatever the results' size, record pages and link
 * pages are followed to every record in input order, bodies above the safe request size are 413,
 * and timeoutMs must fit in the worker's time.
 */
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { gzipSync } from 'node:zlib';
import { handle } from 'hono/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsRuntime, resetAwsRuntime } from '../functions/aws/environment.ts';
import { createAwsApp, isContentTypeBinary } from '../functions/aws/handlers/api.ts';
import { layout } from '../functions/core/layout.ts';
import { failedRecord, serializeRecord } from '../functions/core/record.ts';
import { startFakeSqs, type FakeSqs } from './support/fake-sqs.ts';
import { httpApiEvent, lambdaContext } from './support/lambda-events.ts';
import { awsTestEnv, startS3, type FakeS3 } from './support/s3.ts';

const TOKEN = 'limits-token';
const LAMBDA_PAYLOAD_MAX = 6_291_456;
let s3: FakeS3;
let sqs: FakeSqs;
let lambda: ReturnType<typeof handle>;
const saved = { ...process.env };
const payloads: number[] = [];

beforeAll(async () => {
  [s3, sqs] = await Promise.all([startS3(), startFakeSqs()]);
  Object.assign(
    process.env,
    awsTestEnv(s3, sqs.endpoint, sqs.queueUrl('chunks'), {
      FANOUT_TOKEN: TOKEN,
      // records, never links, unless asked: the pages themselves are under test
      FANOUT_INLINE_RESULTS_MAX_BYTES: String(1 << 30),
      FANOUT_RESULT_PAGE_MAX_LINKS: '5',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    }),
  );
  resetAwsRuntime();
  lambda = handle(createAwsApp(), { isContentTypeBinary });
});
afterAll(async () => {
  process.env = saved;
  resetAwsRuntime();
  await Promise.all([s3.close(), sqs.close()]);
});

async function api(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  const result = (await lambda(
    httpApiEvent(method, path, { body, headers: { authorization: `Bearer ${TOKEN}`, ...headers } }) as never,
    lambdaContext(),
  )) as APIGatewayProxyStructuredResultV2;
  const payload = Buffer.byteLength(JSON.stringify(result));
  payloads.push(payload);
  expect(payload, `${method} ${path}`).toBeLessThanOrEqual(LAMBDA_PAYLOAD_MAX);
  const text = result.isBase64Encoded ? Buffer.from(result.body ?? '', 'base64').toString() : (result.body ?? '');
  return { status: result.statusCode!, headers: (result.headers ?? {}) as Record<string, string>, text, base64: result.isBase64Encoded, payload };
}

const N = 6_000;
const CHUNK = 500;
let jobId: string;

/**
 * A job of N URLs whose result files are written here directly: each record carries a 2 KiB body
 * of quotes and backslashes, the worst case for a Lambda's JSON payload (each is escaped twice:
 * once in the record, once in the response). About 50 MB as a Lambda would carry it unpaged.
 */
beforeAll(async () => {
  const urls = Array.from({ length: N }, (_, i) => `http://203.0.113.9/item/${i}`);
  const res = await api('POST', `/jobs?chunkSize=${CHUNK}`, urls.join('\n'), { 'content-type': 'text/plain' });
  expect(res.status).toBe(202);
  jobId = JSON.parse(res.text).jobId;
  const body = '"\\'.repeat(1024);
  const store = awsRuntime().store;
  for (let chunk = 0; chunk < N / CHUNK; chunk++) {
    const lines: string[] = [];
    for (let index = chunk * CHUNK; index < (chunk + 1) * CHUNK; index++) {
      const record = { ...failedRecord({ index, url: urls[index]! }, 'internal', 'synthetic'), body, bodyEncoding: 'utf8' as const };
      lines.push(serializeRecord(record));
    }
    await store.put(layout.results(jobId, chunk), gzipSync(lines.join('')));
  }
});

describe('every Lambda response fits 6 MB', () => {
  it('record pages: every record once, in input order, each response under the payload limit, sent as text', async () => {
    const indexes: number[] = [];
    let path: string | null = `/jobs/${jobId}/results`;
    let pages = 0;
    while (path) {
      const res = await api('GET', path);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
      expect(res.base64).toBe(false);
      pages++;
      for (const line of res.text.trim().split('\n')) indexes.push(JSON.parse(line).index);
      const link = res.headers['link'];
      if (link) expect(res.headers['fanout-next-cursor']).toBeTruthy();
      path = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1]! : null;
    }
    expect(indexes).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(pages).toBeGreaterThan(5);
    // pages are full: the largest comes near the limit without passing it
    expect(Math.max(...payloads)).toBeGreaterThan(4_000_000);
  });

  it('link pages: a range of files each, with next in the body and the headers, together every file', async () => {
    const keys: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await api('GET', `/jobs/${jobId}/results?links=true${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      const page = JSON.parse(res.text) as { files: { key: string; chunk: number; url: string }[]; next: string | null };
      expect(page.files.length).toBeLessThanOrEqual(5);
      keys.push(...page.files.map((f) => f.key));
      expect(res.headers['fanout-next-cursor'] ?? null).toBe(page.next);
      if (page.next) expect(res.headers['link']).toMatch(/links=true&cursor=/);
      cursor = page.next;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(keys).toEqual(Array.from({ length: N / CHUNK }, (_, c) => layout.results(jobId, c)));
  });

  it('large results are answered as link pages unasked', async () => {
    process.env.FANOUT_INLINE_RESULTS_MAX_BYTES = '1000';
    try {
      const res = await api('GET', `/jobs/${jobId}/results`);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(res.text).files).toHaveLength(5);
      const records = await api('GET', `/jobs/${jobId}/results?links=false&limit=3`);
      expect(records.headers['content-type']).toMatch(/^application\/x-ndjson/);
      expect(records.text.trim().split('\n')).toHaveLength(3);
      expect(records.headers['link']).toMatch(/links=false&limit=3&cursor=/);
    } finally {
      process.env.FANOUT_INLINE_RESULTS_MAX_BYTES = String(1 << 30);
    }
  });
});

describe('requests the AWS API refuses', () => {
  it('a body above 4 MiB is 413 problem+json pointing at /uploads', async () => {
    const line = 'http://203.0.113.9/x\n';
    const body = line.repeat(Math.ceil((4 * 1024 * 1024 + 1) / line.length));
    const res = await api('POST', '/jobs', body, { 'content-type': 'text/plain' });
    expect(res.status).toBe(413);
    expect(res.headers['content-type']).toMatch(/problem\+json/);
    expect(JSON.parse(res.text).detail).toMatch(/\/uploads/);
  });

  it('timeoutMs beyond the worker timeout minus the start and hand-on margins is 400 naming timeoutMs', async () => {
    const submit = (query: string) => api('POST', `/jobs${query}`, 'http://203.0.113.9/t', { 'content-type': 'text/plain' });
    const refused = await submit('?timeoutMs=280001');
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.text)).toMatchObject({ field: 'timeoutMs' });
    expect(JSON.parse(refused.text).detail).toMatch(/300 s/);
    expect((await submit('?timeoutMs=280000')).status).toBe(202);
    const inBody = await api('POST', '/jobs', JSON.stringify({ urls: ['http://203.0.113.9/t'], options: { timeoutMs: 600_000 } }), { 'content-type': 'application/json' });
    expect(inBody.status).toBe(400);
    process.env.FANOUT_WORKER_TIMEOUT_SECONDS = '60';
    try {
      expect((await submit('?timeoutMs=40001')).status).toBe(400);
      expect((await submit('?timeoutMs=40000')).status).toBe(202);
    } finally {
      delete process.env.FANOUT_WORKER_TIMEOUT_SECONDS;
    }
  });

  it("a headerEnv variable outside the stack's list (FANOUT_HEADER_ENV_VARS), or one of fanout's or AWS's own, is 400 naming the header", async () => {
    const submit = (headerEnv: Record<string, string>) =>
      api('POST', '/jobs', JSON.stringify({ urls: ['http://203.0.113.9/h'], options: { headerEnv } }), { 'content-type': 'application/json' });
    process.env.FANOUT_HEADER_ENV_VARS = 'PARTNER_KEY';
    try {
      expect((await submit({ 'x-key': 'PARTNER_KEY' })).status).toBe(202);
      const other = await submit({ 'x-key': 'DATABASE_URL' });
      expect(other.status).toBe(400);
      expect(JSON.parse(other.text)).toMatchObject({ field: 'headerEnv.x-key' });
      expect(JSON.parse(other.text).detail).toMatch(/exposes only PARTNER_KEY/);
      const stolen = await submit({ 'x-key': 'AWS_SECRET_ACCESS_KEY' });
      expect(stolen.status).toBe(400);
      expect(JSON.parse(stolen.text).detail).toMatch(/own configuration/);
    } finally {
      delete process.env.FANOUT_HEADER_ENV_VARS;
    }
  });
});
