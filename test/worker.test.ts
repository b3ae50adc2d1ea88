import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { openInput } from '../functions/core/input.ts';
import { chunkMessage } from '../functions/core/job.ts';
import { layout } from '../functions/core/layout.ts';
import { planJob } from '../functions/core/plan.ts';
import type { ObjectStore } from '../functions/core/ports.ts';
import { jobStatus, readManifest, type Manifest } from '../functions/core/status.ts';
import { processChunk, type WorkerDeps } from '../functions/core/worker.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { FaultyStore } from './support/faulty-store.ts';
import { expectOnePerIndex, planUrls, readRecords } from './support/jobs.ts';
import type { Origin } from './support/origin.ts';
import { originAndFetcher } from './support/origin-hooks.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
const fetcher = originAndFetcher((o) => (origin = o));

function setup(store: ObjectStore = new LocalStore(tempDir())) {
  const queue = new MemoryQueue();
  const finished: Manifest[] = [];
  const deps: WorkerDeps = { store, fetcher, onJobFinished: (m) => void finished.push(m), cancelPollMs: 50 };
  return { store, queue, deps, finished };
}

async function drain(queue: MemoryQueue, deps: WorkerDeps): Promise<void> {
  for (;;) {
    const messages = await queue.receive({ max: 10 });
    if (messages.length === 0) return;
    for (const m of messages) {
      await processChunk(deps, m.body);
      await queue.delete(m.receipt);
    }
  }
}

describe('planning', () => {
  it('writes job.json and one input per chunk, and enqueues one small message per chunk', async () => {
    const { store, queue } = setup();
    const urls = Array.from({ length: 23 }, (_, i) => `${origin.url}/ok?i=${i}`);
    const job = await planUrls(store, queue, urls, { chunkSize: 10 });
    expect(job).toMatchObject({ total: 23, chunks: 3, source: 'test' });
    expect(job.jobId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(JSON.parse((await store.get(layout.job(job.jobId)))!.toString())).toMatchObject({ total: 23, chunks: 3 });
    expect(queue.size).toBe(3);
    const messages = await queue.receive({ max: 10 });
    expect(messages.map((m) => JSON.parse(m.body))).toEqual([0, 1, 2].map((chunk) => ({ type: 'chunk', jobId: job.jobId, chunk })));
  });

  it('leaves nothing behind when a line is bad, even after chunks were written', async () => {
    const { store, queue } = setup();
    const lines = Array.from({ length: 50 }, (_, i) => `${origin.url}/ok?i=${i}`);
    lines.push('ftp://nope.test/');
    const input = await openInput(Readable.from([lines.join('\n')]));
    await expect(planJob(store, queue, { input, options: { chunkSize: 10 } })).rejects.toThrow(/^line 51: unsupported scheme/);
    expect(await store.listPrefixes('jobs/')).toEqual([]);
    expect(queue.size).toBe(0);
  });

  it('refuses bad options before reading the input', async () => {
    const { store, queue } = setup();
    const input = await openInput(Readable.from(['http://a.test/\n']));
    await expect(planJob(store, queue, { input, options: { concurrency: -1 } })).rejects.toThrow(/option "concurrency"/);
    expect(await store.listPrefixes('jobs/')).toEqual([]);
  });

  it('takes options from a JSON document, overridden by options given beside it', async () => {
    const { store, queue } = setup();
    const doc = JSON.stringify({ urls: ['http://a.test/'], options: { retries: 5, concurrency: 3 } });
    const job = await planJob(store, queue, { input: await openInput(Readable.from([doc])), options: { concurrency: 7 } });
    expect(job.options).toMatchObject({ retries: 5, concurrency: 7 });
  });
});

describe('processing chunks', () => {
  it('writes records in index order whatever order they finish in, and a manifest once', async () => {
    const { store, queue, deps, finished } = setup();
    const urls = Array.from({ length: 40 }, (_, i) => `${origin.url}/delay?ms=${(i * 37) % 120}&i=${i}`);
    const job = await planUrls(store, queue, urls, { chunkSize: 15, concurrency: 16 });
    await drain(queue, deps);
    const records = await readRecords(store, job.jobId);
    expectOnePerIndex(records, 40);
    expect(records.every((r, i) => r.url === urls[i] && r.ok)).toBe(true);
    expect(finished).toHaveLength(1);
    const manifest = (await readManifest(store, job.jobId))!;
    expect(manifest).toMatchObject({ state: 'completed', total: 40, done: 40, succeeded: 40, failed: 0, byStatus: { 200: 40 } });
    expect(manifest.files).toEqual([0, 1, 2].map((c) => layout.results(job.jobId, c)));
    const status = await jobStatus(store, job.jobId);
    expect(status).toMatchObject({ state: 'completed', done: 40, chunks: { total: 3, done: 3 } });
  });

  it('counts by status and by error, and status sums equal the records', async () => {
    const { store, queue, deps } = setup();
    const closedPort = 1; // nothing listens on port 1 here
    const urls = [`${origin.url}/ok`, `${origin.url}/status?code=404`, `${origin.url}/status?code=500`, `http://127.0.0.1:${closedPort}/`];
    const job = await planUrls(store, queue, urls, { retries: 0 });
    await drain(queue, deps);
    const status = await jobStatus(store, job.jobId);
    expect(status).toMatchObject({
      total: 4,
      done: 4,
      succeeded: 1,
      failed: 3,
      byStatus: { 200: 1, 404: 1, 500: 1 },
      byError: { connect: 1 },
    });
    expect(status.done).toBe(status.succeeded + status.failed);
    expect(status.latencyMs.p50).toBeGreaterThan(0);
  });

  it('a redelivered message never double-counts (sequential redelivery)', async () => {
    const { store, queue, deps, finished } = setup();
    const job = await planUrls(store, queue, [`${origin.url}/ok?a`, `${origin.url}/ok?b`]);
    const [message] = await queue.receive({ max: 1 });
    expect((await processChunk(deps, message!.body)).outcome).toBe('written');
    expect((await processChunk(deps, message!.body)).outcome).toBe('already-done');
    expectOnePerIndex(await readRecords(store, job.jobId), 2);
    expect(finished).toHaveLength(1);
    expect((await jobStatus(store, job.jobId)).done).toBe(2);
  });

  it('the same message delivered twice at once yields one result file whose counts match it', async () => {
    const { store, queue, deps, finished } = setup();
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/delay?ms=${i % 7}&i=${i}`);
    const job = await planUrls(store, queue, urls, { chunkSize: 30 });
    const body = chunkMessage(job.jobId, 0);
    const outcomes = await Promise.all([processChunk(deps, body), processChunk(deps, body), processChunk(deps, body)]);
    expect(outcomes.map((o) => o.outcome).sort()).toEqual(['lost-race', 'lost-race', 'written']);
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(finished).toHaveLength(1);
    expect(await jobStatus(store, job.jobId)).toMatchObject({ done: 30, succeeded: 30 });
  });

  it('finishes the work of a delivery that wrote results but died before its summary', async () => {
    const faulty = new FaultyStore(new LocalStore(tempDir()));
    const { store, queue, deps, finished } = setup(faulty);
    const job = await planUrls(store, queue, [`${origin.url}/ok?x`]);
    const body = chunkMessage(job.jobId, 0);
    faulty.fail('put', /\/chunks\//);
    await expect(processChunk(deps, body)).rejects.toThrow(/injected put failure/);
    expect(await store.exists(layout.results(job.jobId, 0))).toBe(true);
    expect(finished).toHaveLength(0);
    const again = await processChunk(deps, body);
    expect(again.outcome).toBe('lost-race');
    expect(finished).toHaveLength(1);
    expect(await jobStatus(store, job.jobId)).toMatchObject({ state: 'completed', done: 1 });
  });

  it('a transient store failure makes the delivery fail; the next one writes everything', async () => {
    const faulty = new FaultyStore(new LocalStore(tempDir()));
    const { store, queue, deps } = setup(faulty);
    const job = await planUrls(store, queue, [`${origin.url}/ok?1`, `${origin.url}/ok?2`]);
    const body = chunkMessage(job.jobId, 0);
    faulty.fail('put', /\/results\//);
    await expect(processChunk(deps, body)).rejects.toThrow(/injected/);
    expect(await store.exists(layout.results(job.jobId, 0))).toBe(false);
    expect((await processChunk(deps, body)).outcome).toBe('written');
    expectOnePerIndex(await readRecords(store, job.jobId), 2);
  });

  it('on the final receive, a failing chunk gets chunk_failed records instead of vanishing', async () => {
    const faulty = new FaultyStore(new LocalStore(tempDir()));
    const { store, queue, deps, finished } = setup(faulty);
    const job = await planUrls(store, queue, [`${origin.url}/ok?1`, `${origin.url}/ok?2`, `${origin.url}/ok?3`], { bodies: 'store' });
    faulty.fail('put', /\/bodies\//, Infinity); // bodies cannot be stored: the fetch path fails for good
    const body = chunkMessage(job.jobId, 0);
    await expect(processChunk(deps, body)).rejects.toThrow(/injected/);
    const last = await processChunk(deps, body, { finalReceive: true });
    expect(last.outcome).toBe('chunk-failed');
    const records = await readRecords(store, job.jobId);
    expectOnePerIndex(records, 3);
    expect(records.every((r) => r.ok === false && r.error?.code === 'chunk_failed')).toBe(true);
    expect(finished[0]).toMatchObject({ state: 'completed', failed: 3, byError: { chunk_failed: 3 } });
  });

  it('stores bodies as objects with bodies=store', async () => {
    const { store, queue, deps } = setup();
    const job = await planUrls(store, queue, [`${origin.url}/ok?size=3`, `${origin.url}/binary?size=16`], { bodies: 'store' });
    await drain(queue, deps);
    const records = await readRecords(store, job.jobId);
    expect(records.map((r) => r.bodyKey)).toEqual([layout.body(job.jobId, 0), layout.body(job.jobId, 1)]);
    expect(records[0]!.body).toBeUndefined();
    expect((await store.get(layout.body(job.jobId, 0)))!.toString()).toBe('xxx');
    expect((await store.get(layout.body(job.jobId, 1)))!.length).toBe(16);
  });

  it('inlines bodies with their encoding, and omits them with bodies=none', async () => {
    const { store, queue, deps } = setup();
    const inline = await planUrls(store, queue, [`${origin.url}/latin1`, `${origin.url}/binary?size=8`]);
    const none = await planUrls(store, queue, [`${origin.url}/ok?size=9`], { bodies: 'none' });
    await drain(queue, deps);
    const [text, binary] = await readRecords(store, inline.jobId);
    expect(text).toMatchObject({ body: 'café crème', bodyEncoding: 'utf8' });
    expect(binary!.bodyEncoding).toBe('base64');
    expect(Buffer.from(binary!.body!, 'base64')).toHaveLength(8);
    const [counted] = await readRecords(store, none.jobId);
    expect(counted).toMatchObject({ bytes: 9 });
    expect(counted).not.toHaveProperty('body');
  });

  it('cancel: a marker in the store aborts in-flight requests and cancels what was not fetched', async () => {
    const { store, queue, deps, finished } = setup();
    const urls = [`${origin.url}/ok?first`, ...Array.from({ length: 20 }, (_, i) => `${origin.url}/hang?i=${i}`)];
    const job = await planUrls(store, queue, urls, { concurrency: 5, timeoutMs: 30_000, chunkSize: 21 });
    const [message] = await queue.receive({ max: 1 });
    setTimeout(() => void store.put(layout.cancel(job.jobId), '{}'), 300);
    const t0 = Date.now();
    await processChunk(deps, message!.body);
    expect(Date.now() - t0).toBeLessThan(5_000);
    const records = await readRecords(store, job.jobId);
    expectOnePerIndex(records, 21);
    expect(records[0]!.ok).toBe(true);
    expect(records.slice(1).every((r) => r.error?.code === 'cancelled')).toBe(true);
    expect(finished[0]).toMatchObject({ state: 'cancelled', done: 21, byError: { cancelled: 20 } });
  });

  it('a delivery running out of time keeps what it fetched and hands the rest on; nothing is fetched twice', async () => {
    const { store, queue, deps, finished } = setup();
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/delay?ms=150&budget=${i}`);
    const job = await planUrls(store, queue, urls, { concurrency: 2, timeoutMs: 400, retries: 0 });
    const body = chunkMessage(job.jobId, 0);
    const first = await processChunk(deps, body, { deadline: Date.now() + 1_400, marginMs: 200 });
    expect(first.outcome).toBe('continued');
    expect(JSON.parse(first.continuation!)).toEqual({ type: 'chunk', jobId: job.jobId, chunk: 0, continuation: 1 });
    expect(await store.exists(layout.results(job.jobId, 0))).toBe(false);
    const marker = JSON.parse((await store.get(layout.partDone(job.jobId, 0, 0)))!.toString());
    expect(marker.from).toBe(0);
    expect(marker.to).toBeGreaterThan(0);
    expect(marker.to).toBeLessThan(20);

    const second = await processChunk(deps, first.continuation!);
    expect(second.outcome).toBe('written');
    const records = await readRecords(store, job.jobId);
    expectOnePerIndex(records, 20);
    expect(records.every((r) => r.ok)).toBe(true);
    // items kept by the first delivery were not fetched again (a handed-on item may have been started once)
    for (let i = 0; i < marker.to; i++) expect(origin.hits.get(`/delay?ms=150&budget=${i}`)).toBe(1);
    expect(finished[0]).toMatchObject({ done: 20, succeeded: 20 });
    expect(await store.listPrefixes(`jobs/${job.jobId}/parts/`)).toEqual([]);
  });

  it('chunk_failed after a hand-over keeps the records that were already fetched', async () => {
    const faulty = new FaultyStore(new LocalStore(tempDir()));
    const { store, queue, deps } = setup(faulty);
    const urls = Array.from({ length: 10 }, (_, i) => `${origin.url}/delay?ms=150&fail=${i}`);
    const job = await planUrls(store, queue, urls, { concurrency: 1, timeoutMs: 400, retries: 0, bodies: 'store' });
    const body = chunkMessage(job.jobId, 0);
    const first = await processChunk(deps, body, { deadline: Date.now() + 1_100, marginMs: 200 });
    expect(first.outcome).toBe('continued');
    const kept = JSON.parse((await store.get(layout.partDone(job.jobId, 0, 0)))!.toString()).to as number;
    faulty.fail('put', /\/bodies\//, Infinity);
    const last = await processChunk(deps, first.continuation!, { finalReceive: true });
    expect(last.outcome).toBe('chunk-failed');
    const records = await readRecords(store, job.jobId);
    expectOnePerIndex(records, 10);
    expect(records.slice(0, kept).every((r) => r.ok)).toBe(true);
    expect(records.slice(kept).every((r) => r.error?.code === 'chunk_failed')).toBe(true);
  });

  it('refuses a malformed message', async () => {
    const { deps } = setup();
    await expect(processChunk(deps, '{"type":"chunk","jobId":"../x","chunk":0}')).rejects.toThrow(/malformed job id/);
    await expect(processChunk(deps, 'not json')).rejects.toThrow();
  });
});

// From an attack on the in-order stage and part files: one record per index whatever the deliveries do.
describe('deliveries', () => {
  it('many hand-ons with tight deadlines: one record per index, in order', async () => {
    const store = new LocalStore(tempDir());
    const queue = new MemoryQueue();
    const finished: Manifest[] = [];
    const deps: WorkerDeps = { store, fetcher, onJobFinished: (m) => void finished.push(m), cancelPollMs: 50 };
    const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/delay?ms=${i % 9 === 0 ? 350 : 40}&h=${i}`);
    const job = await planUrls(store, queue, urls, { concurrency: 3, timeoutMs: 400, retries: 0 });
    let body = chunkMessage(job.jobId, 0);
    let rounds = 0;
    for (;;) {
      rounds++;
      const r = await processChunk(deps, body, { deadline: Date.now() + 700 + (rounds % 3) * 150, marginMs: 150 });
      if (r.outcome !== 'continued') break;
      body = r.continuation!;
      expect(rounds).toBeLessThan(60);
    }
    expect(rounds).toBeGreaterThan(2);
    expectOnePerIndex(await readRecords(store, job.jobId), 60);
    expect(finished[0]).toMatchObject({ done: 60 });
  }, 60_000);

  it('a body store that fails now and then (run rejects) mid-chunk, parts every 30 ms, hard link: retried deliveries end with one record each', async () => {
    const local = new LocalStore(tempDir());
    const store = new FaultyStore(local); // forwards the folder store's hard link
    const queue = new MemoryQueue();
    const finished: Manifest[] = [];
    const deps: WorkerDeps = { store, fetcher, onJobFinished: (m) => void finished.push(m), cancelPollMs: 50, partEveryMs: 30 };
    const urls = Array.from({ length: 80 }, (_, i) => `${origin.url}/delay?ms=${(i * 13) % 50}&f=${i}`);
    const job = await planUrls(store, queue, urls, { concurrency: 4, retries: 0, bodies: 'store', chunkSize: 40 });
    for (const chunk of [0, 1]) {
      let tries = 0;
      for (;;) {
        tries++;
        store.fail('put', new RegExp(`/bodies/0*${chunk * 40 + 10 + tries * 7}$`), 1);
        try {
          const r = await processChunk(deps, chunkMessage(job.jobId, chunk));
          expect(['written', 'lost-race']).toContain(r.outcome);
          break;
        } catch (error) {
          expect(String(error)).toMatch(/injected put failure/);
          expect(tries).toBeLessThan(10);
        }
      }
    }
    const records = await readRecords(store, job.jobId);
    expect(store.failures.length).toBeGreaterThan(1);
    expectOnePerIndex(records, 80);
    expect(records.every((r) => r.ok && r.bodyKey)).toBe(true);
    expect(finished[0]).toMatchObject({ done: 80, succeeded: 80 });
    expect(await local.listPrefixes(`jobs/${job.jobId}/parts/`)).toEqual([]);
  }, 60_000);

  /** A folder store whose calls are logged (`method key`), to see which files a delivery touched. */
  function loggedStore(): { store: ObjectStore; ops: string[]; local: LocalStore } {
    const local = new LocalStore(tempDir());
    const ops: string[] = [];
    const store = new Proxy(local, {
      get(target, name) {
        const value = Reflect.get(target, name, target) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => (ops.push(`${String(name)} ${String(args[0])}`), (value as (...a: unknown[]) => unknown).apply(target, args));
      },
    });
    return { store, ops, local };
  }

  it('a fresh chunk that ends within its first part goes straight to its result file: no part file, folder or removal', async () => {
    const { store, ops, local } = loggedStore();
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?size=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0 });
    ops.length = 0;
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'written', counts: { count: 30, succeeded: 30 } });
    // The parts folder is only looked at (is there a chain to resume?) and cleared (another delivery
    // may have left parts: with no folder, one syscall), never written.
    expect(ops.filter((op) => op.includes('/parts/'))).toEqual([`list ${layout.partsPrefix(job.jobId, 0)}`, `deletePrefix ${layout.partsPrefix(job.jobId, 0)}`]);
    expect(ops).toContain(`put ${layout.results(job.jobId, 0)}`);
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(await local.listPrefixes(`jobs/${job.jobId}/`)).not.toContain(`jobs/${job.jobId}/parts/`);
  });

  it('a first part past the bytes held in memory goes to its part file as it comes; the result is made from it and the parts removed', async () => {
    const { store, ops, local } = loggedStore();
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    // Random bodies, kept inline as base64: about 6 MB of gzip, past the 4 MiB held.
    const urls = Array.from({ length: 24 }, (_, i) => `${origin.url}/binary?size=${190_000 + i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0, bodies: 'inline' });
    ops.length = 0;
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'written', counts: { count: 24, succeeded: 24 } });
    // The delivery's own part file at position 0 (jobs/JOB/parts/000000/000000.ID.ndjson.gz).
    expect(ops.filter((op) => op.startsWith(`put ${layout.partsPrefix(job.jobId, 0)}000000.`) && op.endsWith('.ndjson.gz'))).toHaveLength(1);
    const records = await readRecords(store, job.jobId);
    expectOnePerIndex(records, 24);
    records.forEach((r, i) => expect(Buffer.from(r.body!, 'base64')).toHaveLength(190_000 + i));
    expect(await local.listPrefixes(`jobs/${job.jobId}/parts/`)).toEqual([]);
  });

  it('a second delivery after the first one finished a single-part chunk: already-done, file intact', async () => {
    const store = new LocalStore(tempDir());
    const queue = new MemoryQueue();
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/delay?ms=5&g=${i}`);
    const job = await planUrls(store, queue, urls, { concurrency: 4, retries: 0 });
    // As the title says: the second delivery comes after the first finished (deliveries at the very
    // same moment: deliveries.test.ts).
    const a = await processChunk(deps, chunkMessage(job.jobId, 0));
    const b = await processChunk(deps, chunkMessage(job.jobId, 0));
    expect([a.outcome, b.outcome]).toEqual(['written', 'already-done']);
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(await store.exists(layout.results(job.jobId, 0))).toBe(true);
  }, 30_000);
});
