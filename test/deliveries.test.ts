// processChunk under time budgets, failing runs and part files: one record per index whatever the
// deliveries do. (From an attack on this round's scheduler and part files.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { chunkMessage } from '../functions/core/job.ts';
import { layout } from '../functions/core/layout.ts';
import type { Manifest } from '../functions/core/status.ts';
import { processChunk, type WorkerDeps } from '../functions/core/worker.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { FaultyStore } from './support/faulty-store.ts';
import { expectOnePerIndex, planUrls, readRecords } from './support/jobs.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

/** FaultyStore that keeps the folder store's hard link (the path this round added). */
class LinkingFaultyStore extends FaultyStore {
  constructor(private readonly local: LocalStore) {
    super(local);
  }
  copyIfAbsent(from: string, to: string) {
    return this.local.copyIfAbsent(from, to);
  }
}

let origin: Origin;
const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await fetcher.close();
  await origin.close();
});

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
    const store = new LinkingFaultyStore(local);
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

  it('a second delivery after the first one finished a single-part chunk: already-done, file intact', async () => {
    const store = new LocalStore(tempDir());
    const queue = new MemoryQueue();
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/delay?ms=5&g=${i}`);
    const job = await planUrls(store, queue, urls, { concurrency: 4, retries: 0 });
    const [a, b] = await Promise.all([processChunk(deps, chunkMessage(job.jobId, 0)), processChunk(deps, chunkMessage(job.jobId, 0))]);
    expect([a.outcome, b.outcome].sort()).toEqual(['lost-race', 'written']);
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(await store.exists(layout.results(job.jobId, 0))).toBe(true);
  }, 30_000);
});
