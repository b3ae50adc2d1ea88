/**
 * The message protocol under failure and at scale: poison messages end, callbacks are not lost,
 * completion and status cost a constant number of store requests whatever the job's size.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLedger } from '../functions/aws/dynamo-ledger.ts';
import { callbackMessage, readCallbackOutbox } from '../functions/core/callback.ts';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { openInput } from '../functions/core/input.ts';
import { chunkMessage } from '../functions/core/job.ts';
import { layout } from '../functions/core/layout.ts';
import { MemoryLedger, type Ledger } from '../functions/core/ledger.ts';
import { handleMessage, type MessageDeps } from '../functions/core/messages.ts';
import type { Body, ObjectStore } from '../functions/core/ports.ts';
import { failedRecord, makeRecord } from '../functions/core/record.ts';
import { writeChunkFile } from '../functions/core/chunk-writer.ts';
import { jobStatus, readManifest } from '../functions/core/status.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { CountingStore } from './support/counting-store.ts';
import { startDynalite, type CountingClient, type Dynalite } from './support/dynalite.ts';
import { FaultyStore } from './support/faulty-store.ts';
import { expectOnePerIndex, planUrls, readRecords } from './support/jobs.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
let dyn: Dynalite;
let dynamo: CountingClient;
const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
const guard = new AddressGuard({ blockPrivate: false });

beforeAll(async () => {
  [origin, dyn] = await Promise.all([startOrigin(), startDynalite()]);
  await dyn.createLedgerTable('ledger');
  dynamo = dyn.client();
});
afterAll(async () => {
  dynamo.client.destroy();
  await fetcher.close();
  await Promise.all([origin.close(), dyn.close()]);
});

/** A loopback callback receiver. */
async function receiver(status = 200) {
  const received: { headers: IncomingHttpHeaders; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, close: () => new Promise((r) => server.close(r)) };
}

async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  for (let waited = 0; !(await check()); waited += 20) {
    if (waited > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function deps(store: ObjectStore, queue: MemoryQueue, ledger: Ledger = new MemoryLedger()): MessageDeps {
  return { store, fetcher, queue, ledger, cancelPollMs: 3_600_000, callbackRetryBaseMs: 5 };
}

/** Delivers every visible message to the shared handler, as a runtime's loop would. */
async function drain(queue: MemoryQueue, d: MessageDeps) {
  for (;;) {
    // Callback retries are delayed messages: wait for them while any message is left.
    const [m] = await queue.receive({ max: 1, waitMs: queue.size > 0 ? 1_000 : 0 });
    if (!m) {
      if (queue.size === 0) return;
      continue;
    }
    try {
      await handleMessage(d, m.body, { receiveCount: m.receiveCount, maxReceiveCount: queue.maxReceiveCount });
      await queue.delete(m.receipt);
    } catch {
      await queue.changeVisibility(m.receipt, 0);
    }
  }
}

describe('a poison message ends', () => {
  it('a dead letter whose chunk_failed write throws ends the job (lostChunks) and is not redelivered', async () => {
    const dataDir = tempDir();
    const store = new FaultyStore(new LocalStore(dataDir));
    const runtime = new EmbeddedRuntime({ dataDir, store, guard, maxReceiveCount: 2, retryDelayMs: 10 });
    const errors: string[] = [];
    runtime.on('error', (_e, context) => errors.push(context));
    const input = await openInput(Readable.from([[1, 2, 3].map((i) => `${origin.url}/ok?p=${i}`).join('\n') + '\n']));
    const job = await runtime.submit(input, { chunkSize: 2 });
    // Chunk 0's result file can never be written: not its records (copied from a part, or put),
    // not even chunk_failed ones.
    store.fail('put', /\/results\/000000/, Infinity);
    store.fail('copyIfAbsent', /\/results\/000000/, Infinity);
    runtime.start();
    try {
      const manifest = await runtime.waitForJob(job.jobId);
      expect(manifest).toMatchObject({ state: 'completed', total: 3, done: 3, succeeded: 1, failed: 2, byError: { chunk_failed: 2 }, lostChunks: [0] });
      expect(manifest.files).toEqual([layout.results(job.jobId, 1)]);
      expect(await jobStatus(store, job.jobId)).toMatchObject({ state: 'completed', lostChunks: [0] });
      expect(runtime.queue.deadLetters).toHaveLength(1);
      expect(runtime.queue.size).toBe(0);
      const failuresBefore = store.failures.length;
      await new Promise((r) => setTimeout(r, 100));
      expect(store.failures.length).toBe(failuresBefore); // nothing keeps trying
    } finally {
      await runtime.stop();
    }
  });

  it('on a dead-letter queue (AWS), earlier tries throw to be retried; the last try acknowledges and ends the job', async () => {
    const store = new FaultyStore(new LocalStore(tempDir()));
    const queue = new MemoryQueue();
    const d = deps(store, queue);
    const job = await planUrls(store, queue, [`${origin.url}/ok?d=1`]);
    store.fail('put', /\/results\//, Infinity);
    const body = chunkMessage(job.jobId, 0);
    const dlq = { deadLetter: true, maxReceiveCount: 3 };
    await expect(handleMessage(d, body, { ...dlq, receiveCount: 1 })).rejects.toThrow();
    // The fallback itself works (the ledger counts the chunk as lost), so the job ends at once.
    const last = await handleMessage(d, body, { ...dlq, receiveCount: 3 });
    expect(last.outcome).toBe('lost');
    expect(await readManifest(store, job.jobId)).toMatchObject({ state: 'completed', failed: 1, byError: { chunk_failed: 1 }, lostChunks: [0] });
    // Even when nothing at all can be written, the last try returns (acknowledged) rather than loop.
    store.fail('get', /./, Infinity);
    const hopeless = await handleMessage(d, body, { ...dlq, receiveCount: 3 });
    expect(hopeless.outcome).toBe('abandoned');
  });
});

describe('the callback outbox', () => {
  it('the finisher dies right after the manifest: the redelivered chunk sends the callback, delivered once', async () => {
    const hook = await receiver();
    try {
      const store = new LocalStore(tempDir());
      const queue = new MemoryQueue();
      const d = deps(store, queue);
      const job = await planUrls(store, queue, [`${origin.url}/ok?cb=1`], { callbackUrl: hook.url });
      const [delivery] = await queue.receive({ max: 1 });
      // The process dies when it tries to send the callback message: after the outbox and manifest.
      const dying = { ...d, queue: { send: async () => Promise.reject(new Error('killed')) } };
      await expect(handleMessage(dying, delivery!.body, { receiveCount: 1, maxReceiveCount: 5 })).rejects.toThrow('killed');
      expect(await readManifest(store, job.jobId)).not.toBeNull();
      expect(await readCallbackOutbox(store, job.jobId)).toMatchObject({ state: 'pending', attempts: 0 });
      // The chunk message was not acknowledged: it comes back, and this time the callback goes out.
      await queue.changeVisibility(delivery!.receipt, 0);
      await drain(queue, d);
      expect(hook.received).toHaveLength(1);
      expect(JSON.parse(hook.received[0]!.body)).toMatchObject({ jobId: job.jobId, state: 'completed', done: 1 });
      expect(await readCallbackOutbox(store, job.jobId)).toMatchObject({ state: 'delivered', attempts: 1, status: 200 });
      // A duplicate callback message sends nothing more.
      await queue.send([callbackMessage(job.jobId)]);
      await drain(queue, d);
      expect(hook.received).toHaveLength(1);
    } finally {
      await hook.close();
    }
  });

  it('locally, a callback pending when the process died is delivered after a restart, signed', async () => {
    const hook = await receiver();
    const dataDir = tempDir();
    try {
      const first = new EmbeddedRuntime({ dataDir, guard, callbackSecret: 'local-secret' });
      // This process dies as it hands the callback to its queue (the queue is lost with it).
      const send = first.queue.send.bind(first.queue);
      first.queue.send = async (bodies) => (bodies.some((b) => b.includes('"callback"')) ? new Promise<void>(() => {}) : send(bodies));
      const input = await openInput(Readable.from([`${origin.url}/ok?restart=1\n`]));
      const job = await first.submit(input, { callbackUrl: hook.url });
      first.start();
      await until(async () => (await readManifest(first.store, job.jobId)) !== null);
      expect(hook.received).toHaveLength(0);
      void first.stop().catch(() => {});

      const second = new EmbeddedRuntime({ dataDir, guard, callbackSecret: 'local-secret' });
      const callbacks: string[] = [];
      second.on('callback', (jobId) => callbacks.push(jobId));
      await second.recover();
      second.start();
      try {
        await until(() => callbacks.length > 0);
        expect(hook.received).toHaveLength(1);
        const { headers, body } = hook.received[0]!;
        const expected = createHmac('sha256', 'local-secret').update(`${headers['x-fanout-timestamp']}.${body}`).digest('hex');
        expect(headers['x-fanout-signature']).toBe(`sha256=${expected}`);
        expect(await readCallbackOutbox(second.store, job.jobId)).toMatchObject({ state: 'delivered' });
      } finally {
        await second.stop();
      }
    } finally {
      await hook.close();
    }
  });

  it('a failing receiver gets 5 attempts in total, counted across restarts, then the entry is failed', async () => {
    const hook = await receiver(503);
    try {
      const store = new LocalStore(tempDir());
      const queue = new MemoryQueue();
      const d = deps(store, queue);
      const job = await planUrls(store, queue, [`${origin.url}/ok?fail=1`], { callbackUrl: hook.url });
      await drain(queue, d);
      expect(hook.received).toHaveLength(5);
      expect(await readCallbackOutbox(store, job.jobId)).toMatchObject({ state: 'failed', attempts: 5, status: 503 });
      // A process that died after its third attempt left this entry: the next one makes the last two.
      const resumed = await planUrls(store, queue, [`${origin.url}/ok?fail=2`], { callbackUrl: hook.url });
      await store.put(layout.callback(resumed.jobId), JSON.stringify({ state: 'pending', attempts: 3, updatedAt: new Date().toISOString() }));
      await drain(queue, d);
      expect(hook.received).toHaveLength(5 + 2);
      expect(await readCallbackOutbox(store, resumed.jobId)).toMatchObject({ state: 'failed', attempts: 5 });
    } finally {
      await hook.close();
    }
  });
});

describe('constant cost', () => {
  /** Runs a job of `chunks` one-URL chunks; returns store requests of the chunks and of one status call. */
  async function measure(chunks: number, ledger: Ledger) {
    const store = new CountingStore(new LocalStore(tempDir()));
    const queue = new MemoryQueue();
    const d = deps(store, queue, ledger);
    const urls = Array.from({ length: chunks }, (_, i) => `${origin.url}/ok?n=${i}`);
    const job = await planUrls(store, queue, urls, { chunkSize: 1 });
    (ledger as MemoryLedger).begin?.(job.jobId);
    // One status call while running, to measure its cost on a job with every chunk but one done.
    const messages = await queue.receive({ max: chunks });
    let statusRequests = 0;
    store.reset();
    dynamo.reset();
    for (const [i, m] of messages.entries()) {
      if (i === messages.length - 1) {
        const before = store.total();
        const status = await jobStatus(store, job.jobId, ledger);
        expect(status).toMatchObject({ state: 'running', done: chunks - 1 });
        statusRequests = store.total() - before;
      }
      await handleMessage(d, m.body, { receiveCount: 1, maxReceiveCount: 3 });
    }
    const chunkRequests = store.total() - statusRequests;
    const dynamoRequests = dynamo.total();
    expect(await readManifest(store, job.jobId)).toMatchObject({ done: chunks });
    expectOnePerIndex(await readRecords(store, job.jobId), chunks);
    return { chunkRequests, statusRequests, dynamoRequests, byOp: Object.fromEntries(store.counts) };
  }

  it('S3 requests per finished chunk and per status call do not grow with the job (embedded ledger)', async () => {
    const small = await measure(10, new MemoryLedger());
    const large = await measure(200, new MemoryLedger());
    const perChunk = (large.chunkRequests - small.chunkRequests) / 190;
    // requests = perChunk x chunks + a fixed cost for finishing (the manifest): linear, not quadratic.
    expect(Number.isInteger(perChunk)).toBe(true);
    expect(small.chunkRequests - 10 * perChunk).toBe(large.chunkRequests - 200 * perChunk);
    expect(perChunk).toBeLessThanOrEqual(8);
    expect(small.statusRequests).toBe(large.statusRequests);
    expect(large.statusRequests).toBeLessThanOrEqual(2);
    console.log(`embedded: ${perChunk} store requests per chunk, ${large.statusRequests} per status call`);
  });

  it('with the DynamoDB ledger: constant store and DynamoDB requests per chunk, constant status', async () => {
    const small = await measure(10, new DynamoLedger(dynamo.client, 'ledger'));
    const large = await measure(200, new DynamoLedger(dynamo.client, 'ledger'));
    const perChunk = (large.chunkRequests - small.chunkRequests) / 190;
    expect(Number.isInteger(perChunk)).toBe(true);
    expect(small.chunkRequests - 10 * perChunk).toBe(large.chunkRequests - 200 * perChunk);
    const dynamoPerChunk = (large.dynamoRequests - small.dynamoRequests) / 190;
    expect(dynamoPerChunk).toBe(1);
    expect(small.statusRequests).toBe(large.statusRequests);
    console.log(`DynamoDB ledger: ${perChunk} S3 + ${dynamoPerChunk} DynamoDB requests per chunk; status ${large.statusRequests} S3 + 1 Query`);
  }, 30_000);
});

describe('hostile records and full disks (issue 14)', () => {
  it('a record that cannot be serialised becomes a too_large failure for that URL only', async () => {
    const store = new LocalStore(tempDir());
    const job = await planUrls(store, new MemoryQueue(), [1, 2, 3].map((i) => `${origin.url}/ok?big=${i}`));
    // A fetched record with an inline body (built from a failed one so it has every field the record has).
    const record = (index: number) =>
      makeRecord({ ...failedRecord({ index, url: `${origin.url}/ok?big=${index + 1}` }, 'internal', ''), ok: true, status: 200, bytes: 5, attempts: 1, error: null }, { body: 'hello', bodyEncoding: 'utf8' });
    // The middle body stands for one past V8's string limit: serialising it throws as V8 does.
    const huge = record(1);
    (huge as unknown as { body: unknown }).body = { toJSON: () => { throw new RangeError('Invalid string length'); } };
    async function* records() {
      yield [record(0), huge];
      yield [record(2)];
    }
    const outcome = await writeChunkFile(store, { resultsKey: layout.results(job.jobId, 0) }, records());
    expect(outcome.counts).toMatchObject({ count: 3, succeeded: 2, failed: 1, byError: { too_large: 1 } });
    const stored = await readRecords(store, job.jobId);
    expectOnePerIndex(stored, 3);
    expect(stored.map((r) => r.error?.code ?? null)).toEqual([null, 'too_large', null]);
    expect(stored[1]).toMatchObject({ ok: false, status: 200, bytes: 5 });
    expect(stored[1]!.body).toBeUndefined();
  });

  it('a full disk is retried with backoff: fetched records never become chunk_failed, none is fetched twice, and the job ends when space returns', async () => {
    const dataDir = tempDir();
    const disk = new FullDisk(new LocalStore(dataDir));
    const runtime = new EmbeddedRuntime({ dataDir, store: disk, guard, maxReceiveCount: 2, retryDelayMs: 10 });
    const errors: string[] = [];
    runtime.on('error', (_e, context) => errors.push(context));
    const input = await openInput(Readable.from([Array.from({ length: 6 }, (_, i) => `${origin.url}/ok?full=${i}`).join('\n') + '\n']));
    const job = await runtime.submit(input, { chunkSize: 2 });
    disk.full = true;
    runtime.start();
    try {
      // More failed writes than the queue's deliveries would allow (2 per message).
      await until(() => disk.refused >= 8);
      expect(await readManifest(disk, job.jobId)).toBeNull();
      disk.full = false;
      const manifest = await runtime.waitForJob(job.jobId);
      expect(manifest).toMatchObject({ state: 'completed', total: 6, done: 6, succeeded: 6, failed: 0 });
      expect(manifest.byError).toEqual({});
      expect(runtime.queue.deadLetters).toHaveLength(0);
      expectOnePerIndex(await readRecords(disk, job.jobId), 6);
      // Reported, once a while rather than at every refused write (a full disk lasts).
      expect(errors.filter((context) => context.startsWith('waiting for space'))).toHaveLength(1);
      // The records waited in memory for space (a delivery that failed instead would fetch again).
      for (let i = 0; i < 6; i++) expect(origin.hits.get(`/ok?full=${i}`), `URL ${i}`).toBe(1);
    } finally {
      await runtime.stop();
    }
  });
});

/** A folder store whose disk can be made full: writes of results and summaries fail with ENOSPC. */
class FullDisk extends FaultyStore {
  full = false;
  refused = 0;

  override async put(key: string, body: Body, options?: { ifAbsent?: boolean; contentType?: string }) {
    if (this.full && /\/(results|chunks)\//.test(key)) {
      this.refused++;
      throw Object.assign(new Error(`ENOSPC: no space left on device, write '${key}'`), { code: 'ENOSPC' });
    }
    return super.put(key, body, options);
  }
}

describe('the message handler', () => {
  it('refuses a malformed live message (retried), and drops a malformed dead letter (never loops)', async () => {
    const store = new LocalStore(tempDir());
    const d = deps(store, new MemoryQueue());
    await expect(handleMessage(d, 'not json', { receiveCount: 1, maxReceiveCount: 3 })).rejects.toThrow(/unknown message type/);
    const dead = await handleMessage(d, 'not json', { receiveCount: 3, maxReceiveCount: 3, deadLetter: true });
    expect(dead).toMatchObject({ type: 'unknown', outcome: 'dropped' });
  });

  it('a finalize message writes the manifest only once every chunk is counted', async () => {
    const store = new LocalStore(tempDir());
    const queue = new MemoryQueue();
    const d = deps(store, queue);
    const job = await planUrls(store, queue, [`${origin.url}/ok?f=1`, `${origin.url}/ok?f=2`], { chunkSize: 1 });
    const finalize = JSON.stringify({ type: 'finalize', jobId: job.jobId });
    expect(await handleMessage(d, finalize, { receiveCount: 1, maxReceiveCount: 3 })).toMatchObject({ outcome: 'incomplete' });
    await drain(queue, d);
    expect(await readManifest(store, job.jobId)).toMatchObject({ done: 2 });
    expect(await handleMessage(d, finalize, { receiveCount: 1, maxReceiveCount: 3 })).toMatchObject({ outcome: 'already-finished' });
  });
});
