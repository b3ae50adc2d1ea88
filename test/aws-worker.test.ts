/**
 * The Lambda worker as deployed: the DynamoDB ledger (dynalite), S3 (s3rver), SQS (the fake), the
 * callback secret from a mocked Secrets Manager, the dead-letter queue's last try, and its metrics.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { APIGatewayProxyStructuredResultV2, SQSBatchResponse } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { callbackSecretSource } from '../functions/aws/callback-secret.ts';
import { awsRuntime, readAwsEnv, resetAwsRuntime } from '../functions/aws/environment.ts';
import { handler as apiHandler } from '../functions/aws/handlers/api.ts';
import { handler as workerHandler } from '../functions/aws/handlers/worker.ts';
import { DynamoLedger } from '../functions/aws/dynamo-ledger.ts';
import { layout } from '../functions/core/layout.ts';
import { startDynalite, type Dynalite } from './support/dynalite.ts';
import { startFakeSqs, type FakeSqs } from './support/fake-sqs.ts';
import { httpApiEvent, lambdaContext, sqsEvent } from './support/lambda-events.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { awsTestEnv, startS3, type FakeS3 } from './support/s3.ts';

const TOKEN = 'worker-test-token';
const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:fanout-callback';
const QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:fanout-chunks';
const DLQ_ARN = 'arn:aws:sqs:us-east-1:123456789012:fanout-chunks-dlq';
const secrets = mockClient(SecretsManagerClient);

let s3: FakeS3;
let sqs: FakeSqs;
let dyn: Dynalite;
let origin: Origin;
const saved = { ...process.env };
const hook: { url: string; received: { headers: IncomingHttpHeaders; body: string }[]; close(): void } = { url: '', received: [], close() {} };

beforeAll(async () => {
  [s3, sqs, dyn, origin] = await Promise.all([startS3(), startFakeSqs(), startDynalite(), startOrigin()]);
  await dyn.createLedgerTable('fanout-ledger');
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hook.received.push({ headers: req.headers, body });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hook.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  hook.close = () => server.close();
  secrets.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves({ SecretString: 'secret-from-secrets-manager' });
  Object.assign(
    process.env,
    awsTestEnv(s3, sqs.endpoint, sqs.queueUrl('chunks'), {
      AWS_ENDPOINT_URL_DYNAMODB: dyn.endpoint,
      FANOUT_TOKEN: TOKEN,
      FANOUT_CALLBACK_SECRET_ARN: SECRET_ARN,
      FANOUT_LEDGER_TABLE: 'fanout-ledger',
      FANOUT_ALLOW_CIDRS: '127.0.0.1/32',
      FANOUT_MAX_RECEIVE_COUNT: '3',
      FANOUT_DLQ_ARN: DLQ_ARN,
      FANOUT_DLQ_MAX_RECEIVE_COUNT: '2',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    }),
  );
  delete process.env.FANOUT_CALLBACK_SECRET;
  resetAwsRuntime();
});
afterAll(async () => {
  process.env = saved;
  resetAwsRuntime();
  secrets.restore();
  hook.close();
  await Promise.all([s3.close(), sqs.close(), dyn.close(), origin.close()]);
});

async function api(method: string, path: string, body?: string) {
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': body?.startsWith('{') ? 'application/json' : 'text/plain' };
  const result = (await apiHandler(httpApiEvent(method, path, { body, headers }) as never, lambdaContext())) as APIGatewayProxyStructuredResultV2;
  const text = result.isBase64Encoded ? Buffer.from(result.body ?? '', 'base64').toString() : (result.body ?? '');
  return { status: result.statusCode!, json: () => JSON.parse(text) };
}

async function drain() {
  const queue = sqs.queue('chunks');
  for (let round = 0; round < 50; round++) {
    const messages = await queue.receive({ max: 5 });
    if (messages.length === 0) return;
    const response = (await workerHandler(sqsEvent(messages, QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
    const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    for (const m of messages) if (!failed.has(m.id)) await queue.delete(m.receipt);
  }
  throw new Error('queue did not drain');
}

/**
 * A stand-in proxy that records the headers it is sent (tagged `x-seen-by`) and answers
 * absolute-form requests itself: the credentials are what these tests check, not proxying
 * (tinyproxy carries requests in proxy.test.ts).
 */
async function recordingProxy(seen: IncomingHttpHeaders[], tag: string): Promise<{ url: string; close: () => void }> {
  const server = createServer((req, res) => {
    seen.push({ ...req.headers, 'x-seen-by': tag });
    res.end(`${tag} ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

/** Submits one job through the API, hands its chunk messages to `handler` (one invocation), and checks it completed with one success. */
async function oneJobThrough(handler: typeof workerHandler, body: string): Promise<void> {
  const { jobId } = (await api('POST', '/jobs', body)).json() as { jobId: string };
  const messages = await sqs.queue('chunks').receive({ max: 5 });
  const response = (await handler(sqsEvent(messages, QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
  expect(response.batchItemFailures, body).toEqual([]);
  for (const m of messages) await sqs.queue('chunks').delete(m.receipt);
  expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', succeeded: 1 });
}

describe('the worker function on the DynamoDB ledger', () => {
  it('runs a job to completed, counts in DynamoDB, and signs its callback with the secret from Secrets Manager', async () => {
    const urls = Array.from({ length: 23 }, (_, i) => `${origin.url}/ok?aws=${i}`);
    const submitted = await api('POST', '/jobs', JSON.stringify({ urls, options: { chunkSize: 5, callbackUrl: hook.url } }));
    expect(submitted.status).toBe(202);
    const { jobId } = submitted.json() as { jobId: string };
    await drain();
    const status = (await api('GET', `/jobs/${jobId}`)).json();
    expect(status).toMatchObject({ state: 'completed', total: 23, done: 23, succeeded: 23, chunks: { total: 5, done: 5 } });
    // The ledger holds the same totals (one shard item: chunks 0-4).
    const progress = await (awsRuntime().ledger as DynamoLedger).progress(jobId);
    expect(progress).toMatchObject({ chunksDone: 5, counts: { count: 23, succeeded: 23, byStatus: { '200': 23 } } });
    expect(hook.received).toHaveLength(1);
    const { headers, body } = hook.received[0]!;
    expect(JSON.parse(body)).toMatchObject({ jobId, state: 'completed', done: 23 });
    const expected = createHmac('sha256', 'secret-from-secrets-manager').update(`${headers['x-fanout-timestamp']}.${body}`).digest('hex');
    expect(headers['x-fanout-signature']).toBe(`sha256=${expected}`);
  });

  it('resolves FANOUT_PROXY_AUTH holding a Secrets Manager ARN (the proxyAuthSecret setting) and sends it to the listed proxy only, never to one a job names', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const proxy = await recordingProxy(seen, 'proxied');
    const proxyUrl = proxy.url;
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials';
    secrets.on(GetSecretValueCommand, { SecretId: arn }).resolves({ SecretString: 'alice:s3cret' });
    // A job's own "proxy" (any API user may name one): it must not receive the credentials.
    const own = await recordingProxy(seen, 'own');
    const ownUrl = own.url;
    process.env.FANOUT_PROXY_AUTH = arn;
    process.env.FANOUT_PROXY_AUTH_FOR = proxyUrl;
    try {
      // A fresh container: the worker module resolves the credentials before its first fetch.
      vi.resetModules();
      const fresh = await import('../functions/aws/handlers/worker.ts');
      for (const via of [proxyUrl, ownUrl]) {
        await oneJobThrough(fresh.handler, JSON.stringify({ urls: [`${origin.url}/ok?via=${encodeURIComponent(via)}`], options: { proxy: via } }));
      }
      expect(seen).toHaveLength(2);
      expect(seen[0]!['proxy-authorization']).toBe(`Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
      expect(JSON.stringify(seen[0])).not.toContain('secretsmanager');
      expect(seen[1]).toMatchObject({ 'x-seen-by': 'own' });
      expect(seen[1]!['proxy-authorization']).toBeUndefined();
    } finally {
      delete process.env.FANOUT_PROXY_AUTH;
      delete process.env.FANOUT_PROXY_AUTH_FOR;
      proxy.close();
      own.close();
    }
  });

  it('a rotated proxy secret reaches a running container after the cache period (read in the background); a failed read keeps the credentials it had', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const proxy = await recordingProxy(seen, 'proxied');
    const proxyUrl = proxy.url;
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-rotated';
    secrets
      .on(GetSecretValueCommand, { SecretId: arn })
      .resolvesOnce({ SecretString: 'alice:s3cret' })
      .rejectsOnce(new Error('throttled'))
      .resolves({ SecretString: 'bob:r0tated' });
    process.env.FANOUT_PROXY_AUTH = arn;
    process.env.FANOUT_PROXY_AUTH_FOR = proxyUrl;
    // Time moves on by whole cache periods between the invocations (everything sees the same clock).
    const realNow = Date.now.bind(Date);
    let offset = 0;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    const logged: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (logged.push(String(chunk)), true));
    try {
      vi.resetModules();
      const fresh = await import('../functions/aws/handlers/worker.ts');
      const { TOKEN_CACHE_MS } = await import('../functions/aws/token.ts');
      // The fresh module graph's Fetcher: the replaced one is closed when the next invocation begins.
      const { Fetcher } = await import('../functions/core/engine/fetcher.ts');
      const closed = vi.spyOn(Fetcher.prototype, 'close');
      const reads = () => secrets.commandCalls(GetSecretValueCommand, { SecretId: arn }).length;
      // A due read starts with an invocation and serves the ones after it: the first read (a cold
      // container) is waited for; the one that fails and the one that gets the rotated secret are not.
      for (const [step, advance, readsAfter] of [[1, true, 1], [2, true, 2], [3, false, 3], [4, false, 3]] as const) {
        await oneJobThrough(fresh.handler, JSON.stringify({ urls: [`${origin.url}/ok?rotation=${step}`], options: { proxy: proxyUrl } }));
        await expect.poll(reads).toBe(readsAfter);
        if (advance) offset += TOKEN_CACHE_MS + 1_000;
      }
      const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;
      expect(seen.map((h) => h['proxy-authorization'])).toEqual([basic('alice:s3cret'), basic('alice:s3cret'), basic('alice:s3cret'), basic('bob:r0tated')]);
      expect(closed).toHaveBeenCalledTimes(1); // alice's, at the start of the fourth invocation
      closed.mockRestore();
      expect(logged.join('')).toContain("the proxies' credentials cannot be resolved: the ones read before are kept until they can");
      expect(logged.join('')).not.toContain('s3cret');
    } finally {
      clock.mockRestore();
      spy.mockRestore();
      delete process.env.FANOUT_PROXY_AUTH;
      delete process.env.FANOUT_PROXY_AUTH_FOR;
      proxy.close();
    }
  });

  it('the fetcher without credentials, used while the secret was unusable, is closed once they can be read', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-late';
    secrets.on(GetSecretValueCommand, { SecretId: arn }).resolvesOnce({ SecretString: 'no-colon-here' }).resolves({ SecretString: 'alice:s3cret' });
    process.env.FANOUT_PROXY_AUTH = arn;
    const realNow = Date.now.bind(Date);
    let offset = 0;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      vi.resetModules();
      const fresh = await import('../functions/aws/handlers/worker.ts');
      const { Fetcher } = await import('../functions/core/engine/fetcher.ts');
      const closed = vi.spyOn(Fetcher.prototype, 'close');
      await oneJobThrough(fresh.handler, `${origin.url}/ok?late=1\n`); // unusable: no credentials
      offset += 5 * 60_000 + 1_000; // past the retry minute and the secret's cache period
      await oneJobThrough(fresh.handler, `${origin.url}/ok?late=2\n`); // readable: a fetcher with them
      expect(closed).not.toHaveBeenCalled();
      await oneJobThrough(fresh.handler, `${origin.url}/ok?late=3\n`);
      expect(closed).toHaveBeenCalledTimes(1); // the one without credentials
      closed.mockRestore();
    } finally {
      clock.mockRestore();
      spy.mockRestore();
      delete process.env.FANOUT_PROXY_AUTH;
    }
  });

  it('a slow Secrets Manager read after the cache period holds up no record (the container keeps its credentials meanwhile)', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-slow';
    let calls = 0;
    secrets.on(GetSecretValueCommand, { SecretId: arn }).callsFake(async () => {
      if (++calls > 1) await new Promise((r) => setTimeout(r, 2_000));
      return { SecretString: 'alice:s3cret' };
    });
    process.env.FANOUT_PROXY_AUTH = arn;
    const realNow = Date.now.bind(Date);
    let offset = 0;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    try {
      vi.resetModules();
      const fresh = await import('../functions/aws/handlers/worker.ts');
      const { TOKEN_CACHE_MS } = await import('../functions/aws/token.ts');
      const took: number[] = [];
      for (const round of [1, 2]) {
        await api('POST', '/jobs', `${origin.url}/ok?slow=${round}\n`);
        const messages = await sqs.queue('chunks').receive({ max: 10 });
        const t0 = performance.now();
        const response = (await fresh.handler(sqsEvent(messages, QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
        took.push(performance.now() - t0);
        expect(response.batchItemFailures).toEqual([]);
        for (const m of messages) await sqs.queue('chunks').delete(m.receipt);
        offset += TOKEN_CACHE_MS + 1_000;
      }
      expect(calls).toBe(2);
      expect(took[1]).toBeLessThan(1_000);
    } finally {
      clock.mockRestore();
      delete process.env.FANOUT_PROXY_AUTH;
    }
  });

  it("a proxy secret that cannot be used (empty, no user:password) fails no message: jobs without a proxy go on, the error is logged", async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-broken';
    process.env.FANOUT_PROXY_AUTH = arn;
    const logged: string[] = [];
    // Errors go to standard error.
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (logged.push(String(chunk)), true));
    try {
      for (const value of ['', 'no-colon-here']) {
        secrets.on(GetSecretValueCommand, { SecretId: arn }).resolves({ SecretString: value });
        vi.resetModules();
        const fresh = await import('../functions/aws/handlers/worker.ts');
        await oneJobThrough(fresh.handler, `${origin.url}/ok?broken=${value.length}\n`);
      }
    } finally {
      spy.mockRestore();
      delete process.env.FANOUT_PROXY_AUTH;
    }
    const errors = logged.filter((line) => line.includes("proxies' credentials cannot be resolved"));
    expect(errors.length).toBe(2);
    expect(errors.join('')).not.toContain('no-colon-here');
  });

  it('two records of a batch, Secrets Manager failing for the first and answering the second: the first one\'s requests are not cut', async () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-flaky';
    // The answer comes late, when the first record is already fetching through the fetcher without credentials.
    secrets
      .on(GetSecretValueCommand, { SecretId: arn })
      .rejectsOnce(new Error('throttled'))
      .callsFake(async () => (await new Promise((r) => setTimeout(r, 250)), { SecretString: 'alice:s3cret' }));
    process.env.FANOUT_PROXY_AUTH = arn;
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      vi.resetModules();
      const fresh = await import('../functions/aws/handlers/worker.ts');
      // Two jobs, one chunk each: slow answers, so the first is still fetching when the second resolves the secret.
      const jobs = [];
      for (const n of [1, 2]) jobs.push((await api('POST', '/jobs', `${origin.url}/delay?ms=400&flaky=${n}\n`)).json() as { jobId: string });
      const messages = await sqs.queue('chunks').receive({ max: 5 });
      expect(messages).toHaveLength(2);
      const response = (await fresh.handler(sqsEvent(messages, QUEUE_ARN), lambdaContext())) as SQSBatchResponse;
      expect(response.batchItemFailures).toEqual([]);
      for (const m of messages) await sqs.queue('chunks').delete(m.receipt);
      for (const { jobId } of jobs) expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', succeeded: 1 });
    } finally {
      spy.mockRestore();
      delete process.env.FANOUT_PROXY_AUTH;
    }
  });

  it('a poison dead letter fails its early tries, and its last try acknowledges it and ends the job', async () => {
    const submitted = await api('POST', '/jobs', `${origin.url}/ok?dlq=1\n${origin.url}/ok?dlq=2\n`);
    const { jobId } = submitted.json() as { jobId: string };
    const [message] = await sqs.queue('chunks').receive({ max: 1 });
    await sqs.queue('chunks').delete(message!.receipt);
    // The chunk's input is gone: not even chunk_failed records can be written.
    await awsRuntime().store.delete(layout.input(jobId, 0));
    const dead = (receiveCount: number) => sqsEvent([{ ...message!, receiveCount }], DLQ_ARN);
    const first = (await workerHandler(dead(1), lambdaContext())) as SQSBatchResponse;
    expect(first.batchItemFailures).toEqual([{ itemIdentifier: message!.id }]);
    const last = (await workerHandler(dead(2), lambdaContext())) as SQSBatchResponse;
    expect(last.batchItemFailures).toEqual([]);
    expect((await api('GET', `/jobs/${jobId}`)).json()).toMatchObject({ state: 'completed', done: 2, failed: 2, byError: { chunk_failed: 2 }, lostChunks: [0] });
  });

  it('emits the metrics the alarms and dashboard read, with the failure code as a dimension', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      await api('POST', '/jobs', `${origin.url}/ok?m=1\n${origin.url}/status?code=500&m=2\nhttp://127.0.0.1:1/\n`);
      await drain();
    } finally {
      spy.mockRestore();
    }
    const emf = lines.flatMap((l) => l.split('\n')).filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
    const names = new Set(emf.flatMap((e) => e._aws.CloudWatchMetrics.flatMap((m: { Metrics: { Name: string }[] }) => m.Metrics.map((x) => x.Name))));
    for (const name of ['UrlsFetched', 'UrlsSucceeded', 'UrlsFailed', 'UrlsFailedByCode', 'ChunkDuration', 'JobsFinished']) expect(names).toContain(name);
    expect(emf.every((e) => e._aws.CloudWatchMetrics[0].Namespace === 'fanout' && e.service === 'fanout-worker')).toBe(true);
    const byCode = emf.filter((e) => e.UrlsFailedByCode !== undefined);
    expect(byCode.map((e) => e.code)).toContain('connect');
  }, 30_000);
});

describe('the callback secret', () => {
  it('FANOUT_CALLBACK_SECRET wins; else Secrets Manager (cached); else the API token', async () => {
    const base = readAwsEnv({ FANOUT_BUCKET: 'b', FANOUT_QUEUE_URL: 'https://sqs.test/q', FANOUT_TOKEN: 'tok' });
    expect(await callbackSecretSource({ ...base, FANOUT_CALLBACK_SECRET: 'env', FANOUT_CALLBACK_SECRET_ARN: SECRET_ARN })()).toBe('env');
    secrets.resetHistory();
    const fromSm = callbackSecretSource({ ...base, FANOUT_CALLBACK_SECRET_ARN: SECRET_ARN });
    expect(await fromSm()).toBe('secret-from-secrets-manager');
    expect(await fromSm()).toBe('secret-from-secrets-manager');
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    expect(await callbackSecretSource(base)()).toBe('tok');
  });
});
