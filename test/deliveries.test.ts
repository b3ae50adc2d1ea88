/**
 * Deliveries of one chunk in the embedded runtime, where a running chunk keeps its records as part
 * files (WorkerDeps.partEveryMs): deliveries that overlap (a queue redelivering early), die, or meet
 * store faults, and first parts held in memory or spilled to their file. Every case ends with one
 * record per URL, in order, and nothing left under the chunk's parts folder. Most cases came from an
 * attack on the held first part (functions/core/worker.ts); the overlapping ones broke half the
 * result files before deliveries wrote part files of their own names.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { countResults } from '../functions/core/chunk-writer.ts';
import { markPart, partsChain } from '../functions/core/continuation.ts';
import { emptyCounts } from '../functions/core/counts.ts';
import { isStoreFull } from '../functions/core/store-errors.ts';
import { chunkMessage } from '../functions/core/job.ts';
import { layout } from '../functions/core/layout.ts';
import type { Body, ObjectStore } from '../functions/core/ports.ts';
import { processChunk, type ChunkResult, type WorkerDeps } from '../functions/core/worker.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { FaultyStore } from './support/faulty-store.ts';
import { expectOnePerIndex, planUrls, readRecords } from './support/jobs.ts';
import type { Origin } from './support/origin.ts';
import { originAndFetcher } from './support/origin-hooks.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
const fetcher = originAndFetcher((o) => (origin = o));

async function settle(p: Promise<ChunkResult>): Promise<ChunkResult | Error> {
  return p.catch((e: unknown) => e as Error);
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/**
 * A delivery, tried again at once up to three times while it throws. A delivery that finds its
 * position kept by another running one stops with an error (the queue tries it again later), and so
 * may the next tries while the other is still ahead: that is allowed, a wrong file is not.
 */
async function deliverRetrying(deps: WorkerDeps, jobId: string): Promise<void> {
  for (let tries = 0; tries < 4; tries++) if (!((await settle(processChunk(deps, chunkMessage(jobId, 0)))) instanceof Error)) return;
}

/** The queue's later try, once the overlapping deliveries are over: it must end the chunk. */
async function deliverLater(deps: WorkerDeps, jobId: string): Promise<void> {
  expect(['written', 'lost-race', 'already-done']).toContain((await processChunk(deps, chunkMessage(jobId, 0))).outcome);
}

/** Random trials: 1-3 deliveries of one chunk, 0-20 ms apart, parts cut every 0-40 ms; the broken result files. */
async function trials(label: string, count: number): Promise<string[]> {
  let seed = 7;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const bad: string[] = [];
  for (let trial = 0; trial < count; trial++) {
    const store = new LocalStore(tempDir());
    const partEveryMs = Math.floor(rand() * 40);
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs };
    const n = 5 + Math.floor(rand() * 40);
    const urls = Array.from({ length: n }, (_, i) => `${origin.url}/delay?ms=${Math.floor(rand() * 30)}&t=${label}-${trial}-${i}`);
    const concurrency = 1 + Math.floor(rand() * 6);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency, retries: 0 });
    const deliveries = 1 + Math.floor(rand() * 3);
    const gaps: number[] = [];
    await Promise.all(
      Array.from({ length: deliveries }, async (_, d) => {
        const gap = d === 0 ? 0 : Math.floor(rand() * 20);
        gaps.push(gap);
        await new Promise((r) => setTimeout(r, gap));
        await deliverRetrying(deps, job.jobId);
      }),
    );
    await deliverLater(deps, job.jobId);
    const indexes = (await readRecords(store, job.jobId)).map((r) => r.index);
    if (JSON.stringify(indexes) !== JSON.stringify(Array.from({ length: n }, (_, i) => i))) {
      bad.push(`trial ${trial}: n=${n} concurrency=${concurrency} partEveryMs=${partEveryMs} deliveries=${deliveries} gaps=${gaps} -> ${indexes.length} records: ${indexes.join(',')}`);
    }
  }
  return bad;
}

/** The store as a delivery that is killed right after it marked its first part sees it: every later put hangs. */
function dyingAfterFirstMark(local: LocalStore): ObjectStore {
  let dead = false;
  return Object.assign(Object.create(local) as LocalStore, {
    put: async (key: string, body: Body, options?: { ifAbsent?: boolean }) => {
      if (dead) return new Promise<boolean>(() => {});
      const ok = await local.put(key, body, options);
      if (key.includes('/parts/') && key.endsWith('.json')) dead = true;
      return ok;
    },
  });
}

async function diedWhileAnotherFinished(): Promise<string[]> {
  const root = tempDir();
  const local = new LocalStore(root);
  // 20 URLs of 60 ms at concurrency 2: about 600 ms a delivery.
  const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/delay?ms=60&q=${i}`);
  const job = await planUrls(local, new MemoryQueue(), urls, { concurrency: 2, retries: 0 });
  // B (a redelivery that came early) started first; its first part is cut at 300 ms, marked, then it dies.
  const b: WorkerDeps = { store: dyingAfterFirstMark(local), fetcher, cancelPollMs: 50, partEveryMs: 300 };
  void processChunk(b, chunkMessage(job.jobId, 0));
  // A starts 250 ms later with an empty parts folder and ends within its own first part (1 s).
  await new Promise((r) => setTimeout(r, 250));
  const a: WorkerDeps = { store: local, fetcher, cancelPollMs: 50, partEveryMs: 1_000 };
  // A delivery that throws is retried, as the queue would.
  let result = await processChunk(a, chunkMessage(job.jobId, 0)).catch((e: unknown) => e as Error);
  if (result instanceof Error) result = await processChunk(a, chunkMessage(job.jobId, 0));
  expect(['written', 'lost-race']).toContain(result.outcome);
  expectOnePerIndex(await readRecords(local, job.jobId), 20);
  return filesUnder(join(root, 'jobs', job.jobId, 'parts'));
}

/** A store whose puts hang for good after `after` puts: a delivery killed at that point. */
function dyingAfter(local: LocalStore, after: number): ObjectStore {
  let puts = 0;
  return Object.assign(Object.create(local) as LocalStore, {
    put: async (key: string, body: Body, options?: { ifAbsent?: boolean }) => {
      if (puts++ >= after) return new Promise<boolean>(() => {});
      return local.put(key, body, options);
    },
  });
}

type Kind = 'parts' | 'budget' | 'plain' | 'killed';

describe('overlapping deliveries', () => {
  it('random mixes of Lambda (time-budgeted), periodic-parts, plain and killed deliveries on one chunk: one record per index, the counts of the file, no parts left (20 trials)', async () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
    const bad: string[] = [];
    const leaks: string[] = [];
    for (let trial = 0; trial < 20; trial++) {
      const root = tempDir();
      const store = new LocalStore(root);
      const n = 5 + Math.floor(rand() * 40);
      const urls = Array.from({ length: n }, (_, i) => `${origin.url}/delay?ms=${Math.floor(rand() * 40)}&mx=${trial}-${i}`);
      const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 1 + Math.floor(rand() * 5), retries: 0, timeoutMs: 150 });
      const kinds: Kind[] = [];
      const results: (ChunkResult | Error)[] = [];
      const deliveries = 2 + Math.floor(rand() * 3);
      const one = async (): Promise<void> => {
        const kindR = rand();
        const kind: Kind = kindR < 0.35 ? 'parts' : kindR < 0.7 ? 'budget' : kindR < 0.85 ? 'plain' : 'killed';
        kinds.push(kind);
        const gap = Math.floor(rand() * 60);
        const partEveryMs = Math.floor(rand() * 40);
        const budgetMs = 200 + Math.floor(rand() * 400);
        const killAfter = Math.floor(rand() * 4);
        await new Promise((r) => setTimeout(r, gap));
        let body = chunkMessage(job.jobId, 0);
        for (let hop = 0; hop < 30; hop++) {
          let r: ChunkResult | Error;
          if (kind === 'killed') {
            void processChunk({ store: dyingAfter(store, killAfter), fetcher, cancelPollMs: 50, partEveryMs }, body).catch(() => {});
            return;
          }
          const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, ...(kind === 'parts' ? { partEveryMs } : {}) };
          r = await processChunk(deps, body, kind === 'budget' ? { deadline: Date.now() + budgetMs, marginMs: 20 } : {}).catch((e: unknown) => e as Error);
          results.push(r);
          if (r instanceof Error) {
            await new Promise((res) => setTimeout(res, 20));
            continue; // the queue tries again
          }
          if (r.outcome !== 'continued') return;
          body = r.continuation!;
        }
      };
      await Promise.all(Array.from({ length: deliveries }, () => one()));
      // The queue's later try.
      const last = await processChunk({ store, fetcher, cancelPollMs: 50 }, chunkMessage(job.jobId, 0));
      const indexes = (await readRecords(store, job.jobId)).map((r) => r.index);
      const fileCounts = await countResults(store, layout.results(job.jobId, 0));
      const summary = JSON.parse((await store.get(layout.chunkDone(job.jobId, 0)))!.toString()) as { count: number; succeeded: number; failed: number };
      const wrongCounts = results.filter((r) => !(r instanceof Error) && ['written', 'lost-race'].includes(r.outcome) && JSON.stringify(r.counts) !== JSON.stringify(fileCounts));
      if (JSON.stringify(indexes) !== JSON.stringify(Array.from({ length: n }, (_, i) => i)) || summary.count !== fileCounts.count || wrongCounts.length > 0) {
        bad.push(`trial ${trial}: n=${n} kinds=${kinds} last=${last.outcome} -> ${indexes.length} records (${indexes.join(',')}), summary ${summary.count}, file ${fileCounts.count}, wrong counts ${wrongCounts.length}`);
      }
      // Give killed/late deliveries a moment, then look for leftovers after the chunk is done.
      await new Promise((r) => setTimeout(r, 300));
      const left = filesUnder(join(root, 'jobs', job.jobId, 'parts'));
      if (left.length > 0) leaks.push(`trial ${trial}: kinds=${kinds}: ${left.length} files left under parts/ after the chunk was done`);
    }
    expect(bad).toEqual([]);
    expect(leaks).toEqual([]);
  }, 300_000);

  it('1-3 deliveries of a chunk, 0-20 ms apart, parts cut every 0-40 ms: one record per index in every result file (40 trials)', async () => {
    expect(await trials('t', 40)).toEqual([]);
  }, 120_000);

  it('two deliveries at the very same moment of a chunk longer than one part (parts every 20 ms), ten times', async () => {
    const broken: string[] = [];
    for (let trial = 0; trial < 10; trial++) {
      const store = new LocalStore(tempDir());
      const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 20 };
      const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/delay?ms=${(i * 7) % 25}&same=${trial}-${i}`);
      const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 3, retries: 0 });
      await Promise.all(
        [0, 1].map(async () => {
          await deliverRetrying(deps, job.jobId);
        }),
      );
      await deliverLater(deps, job.jobId);
      const indexes = (await readRecords(store, job.jobId)).map((r) => r.index);
      if (JSON.stringify(indexes) !== JSON.stringify(Array.from({ length: 30 }, (_, i) => i))) broken.push(`trial ${trial}: ${indexes.join(',')}`);
    }
    expect(broken).toEqual([]);
  }, 120_000);

  it('three deliveries of a small fresh chunk at the same moment: one written, two clean lost races, counts of the file', async () => {
    const root = tempDir();
    const store = new LocalStore(root);
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    // /flaky: the first request of each URL gets a 503, later ones a 200, so deliveries' counts differ.
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/flaky?fails=1&t=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0 });
    const all = await Promise.all([0, 1, 2].map(() => settle(processChunk(deps, chunkMessage(job.jobId, 0)))));
    const fileCounts = await countResults(store, layout.results(job.jobId, 0));
    for (const r of all) {
      expect(r).not.toBeInstanceOf(Error);
      expect((r as ChunkResult).counts).toEqual(fileCounts);
    }
    expect(all.map((r) => (r as ChunkResult).outcome).sort()).toEqual(['lost-race', 'lost-race', 'written']);
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(filesUnder(join(root, '.tmp'))).toEqual([]);
  }, 60_000);

  it('two deliveries of a fresh chunk at the same moment whose first part goes past the bytes held (part files): written + a clean lost race', async () => {
    const root = tempDir();
    const store = new LocalStore(root);
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 24 }, (_, i) => `${origin.url}/binary?size=${190_000 + i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0, bodies: 'inline' });
    const both = await Promise.all([settle(processChunk(deps, chunkMessage(job.jobId, 0))), settle(processChunk(deps, chunkMessage(job.jobId, 0)))]);
    expectOnePerIndex(await readRecords(store, job.jobId), 24);
    expect(both.map((r) => (r instanceof Error ? `threw: ${r.message}` : r.outcome)).sort()).toEqual(['lost-race', 'written']);
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
  }, 60_000);

  it("a delivery marked a part and died while another finished the chunk within its first part: the part is removed", async () => {
    expect(await diedWhileAnotherFinished()).toEqual([]);
  }, 30_000);
});

describe('held and spilled first parts, store faults', () => {
  it('the result put fails once in the held path: the retried delivery writes the chunk, nothing is left', async () => {
    const root = tempDir();
    const store = new FaultyStore(new LocalStore(root));
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?f=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0 });
    store.fail('put', /results\//, 1);
    await expect(processChunk(deps, chunkMessage(job.jobId, 0))).rejects.toThrow(/injected put failure/);
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'written', counts: { count: 30 } });
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
    expect(filesUnder(join(root, '.tmp'))).toEqual([]);
  }, 60_000);

  it('the result file is stored but the put then throws (a store timing out after success): a lost race with the counts of the file', async () => {
    const root = tempDir();
    const local = new LocalStore(root);
    let failAfter = true;
    const store: ObjectStore = Object.assign(Object.create(local) as LocalStore, {
      put: async (key: string, body: Body, options?: { ifAbsent?: boolean }) => {
        const ok = await local.put(key, body, options);
        if (failAfter && key.includes('/results/')) {
          failAfter = false;
          throw new Error('timed out after the object was stored');
        }
        return ok;
      },
    });
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?g=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0 });
    // The file is there, so the delivery's own error does not matter: the chunk is done.
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'lost-race', counts: { count: 30, succeeded: 30 } });
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
  }, 60_000);

  it('ENOSPC on the held result put: the error reaches the caller as a full store (retried when space returns), nothing is left', async () => {
    const root = tempDir();
    const local = new LocalStore(root);
    let full = true;
    const store: ObjectStore = Object.assign(Object.create(local) as LocalStore, {
      put: async (key: string, body: Body, options?: { ifAbsent?: boolean }) => {
        if (full && key.includes('/results/')) {
          // Drain the body as a disk would before failing.
          if (typeof body !== 'string' && !(body instanceof Uint8Array)) for await (const _ of body as AsyncIterable<unknown>);
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        return local.put(key, body, options);
      },
    });
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/ok?h=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0 });
    const error = await processChunk(deps, chunkMessage(job.jobId, 0), { finalReceive: true }).catch((e: unknown) => e);
    expect(isStoreFull(error)).toBe(true);
    full = false;
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'written', counts: { count: 20 } });
    expectOnePerIndex(await readRecords(store, job.jobId), 20);
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
  }, 60_000);

  it('a delivery that dies after the held bytes went to the result file (its chunk summary put fails): the retry is a lost race, counts of the file', async () => {
    const root = tempDir();
    const store = new FaultyStore(new LocalStore(root));
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/flaky?fails=1&d=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0 });
    store.fail('put', /\/chunks\/0+\.json$/, 1);
    await expect(processChunk(deps, chunkMessage(job.jobId, 0))).rejects.toThrow(/injected put failure/);
    // The retry would now fetch 200s, but the file holds the first delivery's 503s.
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'lost-race', counts: { count: 30, failed: 30, byStatus: { 503: 30 } } });
    expectOnePerIndex(await readRecords(store, job.jobId), 30);
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
  }, 60_000);

  it('first parts around 4 MiB of gzip, cut while held or spilled, later parts slow: bodies intact, one record per index, parts removed', async () => {
    for (const size of [168_000, 184_000]) {
      for (const partEveryMs of [30, 10_000]) {
        const root = tempDir();
        const store = new FaultyStore(new LocalStore(root));
        const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs };
        const urls = [
          ...Array.from({ length: 24 }, (_, i) => `${origin.url}/binary?size=${size + i}&s=${partEveryMs}`),
          ...Array.from({ length: 6 }, (_, i) => `${origin.url}/delay?ms=${80 * (i + 1)}&s=${size}-${partEveryMs}-${i}`),
        ];
        const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 4, retries: 0, bodies: 'inline' });
        const r = await processChunk(deps, chunkMessage(job.jobId, 0));
        expect(r).toMatchObject({ outcome: 'written', counts: { count: 30, succeeded: 30 } });
        const records = await readRecords(store, job.jobId);
        expectOnePerIndex(records, 30);
        records.slice(0, 24).forEach((rec, i) => expect(Buffer.from(rec.body!, 'base64')).toHaveLength(size + i));
        expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
        expect(filesUnder(join(root, '.tmp'))).toEqual([]);
      }
    }
  }, 120_000);

  it("a killed delivery's unmarked part at the position a delivery starts from: written beside it (own names), then removed", async () => {
    const root = tempDir();
    const store = new FaultyStore(new LocalStore(root));
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 40 };
    const urls = Array.from({ length: 12 }, (_, i) => `${origin.url}/delay?ms=${30 * (i % 4)}&x=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 2, retries: 0 });
    await store.put(layout.part(job.jobId, 0, 0), 'left by a killed delivery');
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'written', counts: { count: 12 } });
    expectOnePerIndex(await readRecords(store, job.jobId), 12);
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
    expect(filesUnder(join(root, '.tmp'))).toEqual([]);
  }, 60_000);

  it("a Lambda delivery running out of time beside a dead delivery's unmarked part at its position: it keeps its own part and the chunk completes", async () => {
    const root = tempDir();
    const store = new LocalStore(root);
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50 }; // no partEveryMs: the AWS worker's way
    const urls = Array.from({ length: 16 }, (_, i) => `${origin.url}/delay?ms=150&lambda=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 2, timeoutMs: 400, retries: 0 });
    // Before part files had their delivery's name, this leftover blocked the position for good:
    // every later delivery failed to create the part, kept nothing and handed the same items on.
    await store.put(layout.part(job.jobId, 0, 0), 'left by a delivery killed before its mark');
    const first = await processChunk(deps, chunkMessage(job.jobId, 0), { deadline: Date.now() + 1_400, marginMs: 200 });
    expect(first.outcome).toBe('continued');
    const mark = JSON.parse((await store.get(layout.partDone(job.jobId, 0, 0)))!.toString()) as { to: number; file: string };
    expect(mark.to).toBeGreaterThan(0);
    expect(mark.file).toMatch(/\/000000\.[0-9a-f]{16}\.ndjson\.gz$/);
    expect(await processChunk(deps, first.continuation!)).toMatchObject({ outcome: 'written', counts: { count: 16, succeeded: 16 } });
    expectOnePerIndex(await readRecords(store, job.jobId), 16);
    for (let i = 0; i < mark.to; i++) expect(origin.hits.get(`/delay?ms=150&lambda=${i}`)).toBe(1);
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
  }, 30_000);

  it('a part kept by an earlier version (FROM.ndjson.gz, its mark without a file) is resumed from: its records are not fetched again', async () => {
    const root = tempDir();
    const store = new LocalStore(root);
    const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, partEveryMs: 10_000 };
    const urls = Array.from({ length: 10 }, (_, i) => `${origin.url}/ok?old=${i}`);
    const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 2, retries: 0 });
    // Records 0-3 as an earlier version kept them: the part under the position's name, marked without `file`.
    const earlier = new LocalStore(tempDir());
    const other = await planUrls(earlier, new MemoryQueue(), urls.slice(0, 4), { concurrency: 2, retries: 0 });
    await processChunk({ store: earlier, fetcher, cancelPollMs: 50 }, chunkMessage(other.jobId, 0));
    const kept = (await earlier.get(layout.results(other.jobId, 0)))!;
    await store.put(layout.part(job.jobId, 0, 0), kept);
    await store.put(layout.partDone(job.jobId, 0, 0), JSON.stringify({ from: 0, to: 4 }));
    const hitsBefore = (i: number) => origin.hits.get(`/ok?old=${i}`) ?? 0;
    const before = urls.map((_, i) => hitsBefore(i));
    expect(await processChunk(deps, chunkMessage(job.jobId, 0))).toMatchObject({ outcome: 'written', counts: { count: 10 } });
    expectOnePerIndex(await readRecords(store, job.jobId), 10);
    urls.forEach((_, i) => expect(hitsBefore(i) - before[i]!, `URL ${i}`).toBe(i < 4 ? 0 : 1));
    expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
  }, 30_000);

  it('a Lambda delivery that hands on after another delivery finished the chunk: its part is removed when its continuation finds the chunk done', async () => {
    const root = tempDir();
    const store = new LocalStore(root);
    // An origin slow (2 s) until `fast` is set, then instant.
    let fast = false;
    const server = createServer((_req, res) => setTimeout(() => res.end('x'), fast ? 0 : 2_000));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const urls = [...Array.from({ length: 5 }, (_, i) => `${origin.url}/ok?leak=${i}`), ...Array.from({ length: 5 }, (_, i) => `${base}/slow?leak=${i}`)];
      const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 10, retries: 2, retryBaseMs: 5, timeoutMs: 300 });
      // A: a Lambda delivery; items 5-9 time out at 300 ms, their retries are cut by the hard stop at ~500 ms.
      const a = processChunk({ store, fetcher, cancelPollMs: 50 }, chunkMessage(job.jobId, 0), { deadline: Date.now() + 600, marginMs: 100 });
      await new Promise((r) => setTimeout(r, 350));
      // B: a redelivery (no budget) at 350 ms, when the origin is fast: it finishes the chunk.
      fast = true;
      expect((await processChunk({ store, fetcher, cancelPollMs: 50 }, chunkMessage(job.jobId, 0))).outcome).toBe('written');
      const ra = await a;
      expect(ra.outcome).toBe('continued'); // A kept a part after B had finished
      expect(await processChunk({ store, fetcher, cancelPollMs: 50 }, ra.continuation!)).toMatchObject({ outcome: 'already-done' });
      expect(filesUnder(join(root, 'jobs', job.jobId, 'parts'))).toEqual([]);
      expectOnePerIndex(await readRecords(store, job.jobId), 10);
    } finally {
      server.close();
    }
  }, 30_000);

  it('damaged marks (a part gone, unreadable JSON, a file outside the chunk or the mark itself, a bad range): the chunk is fetched again from there and completes', async () => {
    const marks: ((jobId: string) => string)[] = [
      (jobId) => JSON.stringify({ from: 0, to: 3, file: `${layout.partsPrefix(jobId, 0)}000000.deadbeefdeadbeef.ndjson.gz` }),
      () => '{"from": 0, "to": 3, "fi',
      (jobId) => JSON.stringify({ from: 0, to: 3, file: `${layout.partsPrefix(jobId, 1)}000000.deadbeefdeadbeef.ndjson.gz` }),
      (jobId) => JSON.stringify({ from: 0, to: 3, file: layout.partDone(jobId, 0, 0) }),
      () => JSON.stringify({ from: 0, to: 0 }),
      () => JSON.stringify({ from: 0, to: 3, file: 42 }),
    ];
    // The embedded runtime's delivery (periodic parts) and a Lambda's (a time budget), each on a fresh job.
    const paths: [string, Partial<WorkerDeps>, { deadline?: number }][] = [
      ['parts', { partEveryMs: 10_000 }, {}],
      ['lambda', {}, { deadline: Date.now() + 30_000 }],
    ];
    for (const [i, mark] of marks.entries()) {
      for (const [path, extra, options] of paths) {
        const root = tempDir();
        const store = new LocalStore(root);
        const urls = Array.from({ length: 6 }, (_, n) => `${origin.url}/ok?damaged=${i}-${path}-${n}`);
        const job = await planUrls(store, new MemoryQueue(), urls, { concurrency: 2, retries: 0 });
        await store.put(layout.partDone(job.jobId, 0, 0), mark(job.jobId));
        const deps: WorkerDeps = { store, fetcher, cancelPollMs: 50, ...extra };
        expect(await processChunk(deps, chunkMessage(job.jobId, 0), options), `mark ${i}, ${path}`).toMatchObject({ outcome: 'written', counts: { count: 6 } });
        expectOnePerIndex(await readRecords(store, job.jobId), 6);
        expect(filesUnder(join(root, 'jobs', job.jobId, 'parts')), `mark ${i}, ${path}`).toEqual([]);
      }
    }
  }, 60_000);

  it('a slow reader of a damaged chain does not remove the healthy mark another delivery wrote at that position since', async () => {
    const store = new LocalStore(tempDir());
    const job = await planUrls(store, new MemoryQueue(), Array.from({ length: 10 }, (_, i) => `${origin.url}/ok?slow=${i}`), { retries: 0 });
    const { jobId } = job;
    // A damaged chain: a mark for [0, 5) whose part is gone.
    await markPart(store, jobId, 0, 0, 5, emptyCounts(), layout.deliveryPart(jobId, 0, 0, 'aaaaaaaaaaaaaaaa'));
    // Reader B: its look at the missing part is slow (an S3 HEAD, a busy disk).
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let sized!: () => void;
    const sizing = new Promise<void>((r) => (sized = r));
    const slow = Object.create(store, {
      size: { value: async (key: string) => { const answer = await store.size(key); sized(); await gate; return answer; } },
    }) as ObjectStore;
    const b = partsChain(slow, jobId, 0);
    await sizing;
    // Reader C removes the damaged mark, refetches [0, 5) and keeps it: a part and a mark of its own.
    expect((await partsChain(store, jobId, 0)).next).toBe(0);
    const healthy = layout.deliveryPart(jobId, 0, 0, 'cccccccccccccccc');
    await store.put(healthy, 'records');
    expect(await markPart(store, jobId, 0, 0, 5, emptyCounts(), healthy)).toBe(true);
    release();
    await b;
    // B removed nothing it had not read: the healthy chain stands.
    expect((await partsChain(store, jobId, 0)).next).toBe(5);
  });
});

