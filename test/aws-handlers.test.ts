import type { APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2, SQSBatchResponse } from 'aws-lambda';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsRuntime, resetAwsRuntime } from '../functions/aws/environment.ts';
import { handler as apiHandler } from '../functions/aws/handlers/api.ts';
import { handler as scheduleHandler } from '../functions/aws/handlers/schedule.ts';
import { handler as workerHandler } from '../functions/aws/handlers/worker.ts';
import { layout } from '../functions/core/layout.ts';
import type { FetchRecord } from '../functions/core/record.ts';
import { startFakeSqs, type FakeSqs } from './support/fake-sqs.ts';
import { expectOnePerIndex } from './support/jobs.ts';
import { httpApiEvent, lambdaContext, sqsEvent } from './support/lambda-events.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { awsTestEnv, startS3, type FakeS3 } from './support/s3.ts';

const TOKEN = 'handler-test-token';
const QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:fanout-chunks';
const DLQ_ARN = 'arn:aws:sqs:us-east-1:123456789012:fanout-chunks-dlq';
const auth = { authorization: `Bearer ${TOKEN}` };

let s3: FakeS3;
let sqs: FakeSqs;
let origin: Origin;
const saved = { ...process.env };

beforeAll(async () => {
  [s3, sqs, origin] = await Promise.all([startS3(), startFakeSqs(), startOrigin()]);
  Object.assign(
    process.env,
    awsTestEnv(s3, sqs.endpoint, sqs.queueUrl('chunks'), {
      FANOUT_TOKEN: TOKEN,
      FANOUT_ALLOW_CIDRS: '127.0.0.1/32',
      FANOUT_MAX_RECEIVE_COUNT: '3',
      FANOUT_DLQ_ARN: DLQ_ARN,
      FANOUT_PLAN_IN_SLICES_ABOVE_BYTES: '2000',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    }),
  );
  resetAwsRuntime();
});
afterAll(async () => {
  process.env = saved;
  resetAwsRuntime();
  await Promise.all([s3.close(), sqs.close(), origin.close()]);
});

async function api(method: string, path: string, body?: string, headers: Record<string, string> = {}, functionUrl = false) {
  const result = (await apiHandler(httpApiEvent(method, path, { body, headers: { ...auth, ...headers }, functionUrl }) as never, lambdaContext())) as APIGatewayProxyResultV2;
  const structured = result as APIGatewayProxyStructuredResultV2;
  const text = structured.isBase64Encoded ? Buffer.from(structured.body ?? '', 'base64').toString() : (structured.body ?? '');
  return { status: structured.statusCode!, headers: structured.headers ?? {}, text, json: () => JSON.parse(text) };
}

/** Runs the worker over everything on the queue, as the SQS event source would. */
async function drain(remainingMs = 900_000, maxRounds = 100) {
  const queue = sqs.queue('chunks');
  const failures: string[] = [];
  for (let round = 0; round < maxRounds; round++) {
    const messages = await queue.receive({ max: 5 });
    if (messages.length === 0) return failures;
    const response = (await workerHandler(sqsEvent(messages, QUEUE_ARN), lambdaContext(remainingMs))) as SQSBatchResponse;
    const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    failures.push(...failed);
    for (const m of messages) if (!failed.has(m.id)) await queue.delete(m.receipt);
  }
  throw new Error('queue did not drain');
}

async function submit(urls: string[], query = '') {
  const res = await api('POST', `/jobs${query}`, urls.join('\n'), { 'content-type': 'text/plain' });
  expect(res.status).toBe(202);
  return res.json().jobId as string;
}

async function records(jobId: string): Promise<FetchRecord[]> {
  const res = await api('GET', `/jobs/${jobId}/results`);
  expect(res.status).toBe(200);
  return res.text.trim().split('\n').map((l) => JSON.parse(l) as FetchRecord);
}

describe('api function', () => {
  it('answers HTTP API v2 and Function URL events; /health is open, the rest needs the token', async () => {
    expect((await api('GET', '/health', undefined, {}, true)).status).toBe(200);
    const denied = await apiHandler(httpApiEvent('GET', '/jobs') as never, lambdaContext());
    expect((denied as APIGatewayProxyStructuredResultV2).statusCode).toBe(401);
    expect((denied as APIGatewayProxyStructuredResultV2).headers?.['content-type']).toMatch(/problem\+json/);
    expect((await api('GET', '/jobs')).status).toBe(200);
  });

  it('refuses bad input with problem+json and creates nothing', async () => {
    const res = await api('POST', '/jobs', 'http://a.test/\nftp://b.test/', { 'content-type': 'text/plain' });
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ line: 2 });
    expect(await awsRuntime().store.listPrefixes('jobs/')).toEqual([]);
  });
});

describe('worker function', () => {
  it('runs a job to completed; status and records agree', async () => {
    const urls = Array.from({ length: 45 }, (_, i) => `${origin.url}/ok?size=${i}&w=${i}`);
    const jobId = await submit(urls, '?chunkSize=10');
    expect(await drain()).toEqual([]);
    const status = (await api('GET', `/jobs/${jobId}`)).json();
    expect(status).toMatchObject({ state: 'completed', total: 45, done: 45, succeeded: 45, chunks: { total: 5, done: 5 } });
    const all = await records(jobId);
    expectOnePerIndex(all, 45);
    expect(all.map((r) => r.bytes)).toEqual(urls.map((_, i) => i));
  });

  it('a redelivered record changes nothing', async () => {
    const jobId = await submit([`${origin.url}/ok?r=1`, `${origin.url}/ok?r=2`]);
    const [message] = await sqs.queue('chunks').receive({ max: 1 });
    for (let i = 0; i < 2; i++) {
      const response = (await workerHandler(sqsEvent([message!], QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
      expect(response.batchItemFailures).toEqual([]);
    }
    await sqs.queue('chunks').delete(message!.receipt);
    expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', done: 2 });
    expectOnePerIndex(await records(jobId), 2);
  });

  it('reports only the failed record of a batch (partial batch response)', async () => {
    await submit([`${origin.url}/ok?p=1`]);
    const [good] = await sqs.queue('chunks').receive({ max: 1 });
    const bad = { id: 'bad-message', receipt: 'r', receiveCount: 1, body: '{"type":"chunk","jobId":"../../etc","chunk":0}' };
    const response = (await workerHandler(sqsEvent([good!, bad], QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: 'bad-message' }]);
    await sqs.queue('chunks').delete(good!.receipt);
  });

  it('hands a chunk on when the Lambda is about to time out, and the continuation finishes it', async () => {
    const urls = Array.from({ length: 12 }, (_, i) => `${origin.url}/delay?ms=150&t=${i}`);
    const jobId = await submit(urls, '?concurrency=1&timeoutMs=300&retries=0');
    const [message] = await sqs.queue('chunks').receive({ max: 1 });
    // 10 s kept back for writing; 0.8 s left for fetching
    const response = (await workerHandler(sqsEvent([message!], QUEUE_ARN), lambdaContext(10_800))) as SQSBatchResponse;
    expect(response.batchItemFailures).toEqual([]);
    await sqs.queue('chunks').delete(message!.receipt);
    const partKeys: string[] = [];
    for await (const key of awsRuntime().store.list(`jobs/${jobId}/parts/`)) partKeys.push(key);
    expect(partKeys.length).toBeGreaterThan(0);
    expect(sqs.queue('chunks').size).toBe(1); // the continuation
    expect(await drain()).toEqual([]);
    const all = await records(jobId);
    expectOnePerIndex(all, 12);
    expect(all.every((r) => r.ok)).toBe(true);
    expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', done: 12 });
  });

  it('on the final receive, a failing chunk gets chunk_failed records', async () => {
    const jobId = await submit([`${origin.url}/ok?f=1`, `${origin.url}/ok?f=2`], '?bodies=store');
    const [message] = await sqs.queue('chunks').receive({ max: 1 });
    const store = awsRuntime().store;
    const put = store.put.bind(store);
    store.put = async (key, body, options) => {
      if (key.includes('/bodies/')) throw new Error('injected: bodies cannot be stored');
      return put(key, body, options);
    };
    try {
      const early = (await workerHandler(sqsEvent([{ ...message!, receiveCount: 1 }], QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
      expect(early.batchItemFailures).toEqual([{ itemIdentifier: message!.id }]);
      const last = (await workerHandler(sqsEvent([{ ...message!, receiveCount: 3 }], QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
      expect(last.batchItemFailures).toEqual([]);
    } finally {
      store.put = put;
    }
    await sqs.queue('chunks').delete(message!.receipt);
    const all = await records(jobId);
    expectOnePerIndex(all, 2);
    expect(all.every((r) => r.error?.code === 'chunk_failed')).toBe(true);
  });

  it('a record from the dead-letter queue gets chunk_failed records', async () => {
    const jobId = await submit([`${origin.url}/ok?d=1`]);
    const [message] = await sqs.queue('chunks').receive({ max: 1 });
    await sqs.queue('chunks').delete(message!.receipt);
    const response = (await workerHandler(sqsEvent([message!], DLQ_ARN), lambdaContext())) as SQSBatchResponse;
    expect(response.batchItemFailures).toEqual([]);
    expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', byError: { chunk_failed: 1 } });
  });
});

describe('large lists and large results', () => {
  async function upload(list: string): Promise<string> {
    const slot = await api('POST', '/uploads');
    expect(slot.status).toBe(201);
    const { uploadId, url, headers } = slot.json();
    const put = await request(url, { method: 'PUT', body: list, headers });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    return uploadId as string;
  }

  it('an upload above the slice threshold is planned by the workers in slices, then fetched', async () => {
    const urls = Array.from({ length: 120 }, (_, i) => `${origin.url}/ok?slice=${i}`);
    const uploadId = await upload(urls.join('\n'));
    const accepted = await api('POST', '/jobs', JSON.stringify({ upload: uploadId, options: { chunkSize: 25 } }), { 'content-type': 'application/json' });
    expect(accepted.status).toBe(202);
    expect(accepted.json()).toMatchObject({ total: null, chunks: null, state: 'planning' });
    const jobId = accepted.json().jobId;
    expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'planning' });
    // 10 s kept back: each slice writes one chunk, then hands on
    await drain(10_001);
    expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', total: 120, done: 120, chunks: { total: 5 } });
    expectOnePerIndex(await records(jobId), 120);
  });

  it('a bad line in a sliced upload rejects the job, names the line, and leaves no chunk', async () => {
    const lines = Array.from({ length: 100 }, (_, i) => `${origin.url}/ok?bad=${i}`);
    lines[77] = 'ftp://nope.test/x';
    const uploadId = await upload(lines.join('\n'));
    const accepted = await api('POST', '/jobs', JSON.stringify({ upload: uploadId, options: { chunkSize: 10 } }), { 'content-type': 'application/json' });
    const jobId = accepted.json().jobId;
    await drain();
    const status = (await api('GET', `/jobs/${jobId}`)).json();
    expect(status).toMatchObject({ state: 'rejected', error: { line: 78 } });
    expect(status.error.message).toMatch(/unsupported scheme "ftp:"/);
    const left: string[] = [];
    for await (const key of awsRuntime().store.list(`jobs/${jobId}/input/`)) left.push(key);
    expect(left).toEqual([]);
  });

  it('answers large results with presigned links to the gzipped result files', async () => {
    const jobId = await submit([`${origin.url}/ok?l=1`, `${origin.url}/ok?l=2`, `${origin.url}/ok?l=3`], '?chunkSize=2');
    await drain();
    const res = await api('GET', `/jobs/${jobId}/results?links=true`);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const links = res.json();
    expect(links.files.map((f: { key: string }) => f.key)).toEqual([layout.results(jobId, 0), layout.results(jobId, 1)]);
    const lines: FetchRecord[] = [];
    for (const file of links.files) {
      const got = await request(file.url);
      const text = gunzipSync(Buffer.from(await got.body.arrayBuffer())).toString();
      lines.push(...text.trim().split('\n').map((l) => JSON.parse(l)));
    }
    expectOnePerIndex(lines, 3);
  });
});

describe('schedule function', () => {
  it('submits the list of an EventBridge Scheduler entry from the bucket', async () => {
    await awsRuntime().store.put('lists/nightly.txt', [`${origin.url}/ok?n=1`, `${origin.url}/ok?n=2`].join('\n'));
    const out = await scheduleHandler({ schedule: { name: 'nightly', expression: 'cron(0 3 * * ? *)', list: 'lists/nightly.txt', options: { retries: 0 } } });
    expect(out.state).toBe('queued');
    await drain();
    const status = (await api('GET', `/jobs/${out.jobId}`)).json();
    expect(status).toMatchObject({ state: 'completed', done: 2, source: 'schedule:nightly' });
    await expect(scheduleHandler({ source: 'aws.events' })).rejects.toThrow(/not a fanout schedule event/);
  });
});
