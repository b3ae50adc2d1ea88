import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoLedger } from '../functions/aws/dynamo-ledger.ts';
import { emptyCounts, type Counts } from '../functions/core/counts.ts';
import type { JobMeta } from '../functions/core/job.ts';
import { LEDGER_DEFAULTS, MemoryLedger, type Ledger } from '../functions/core/ledger.ts';
import { parseJobOptions } from '../functions/core/options.ts';
import { startDynalite, type CountingClient, type Dynalite } from './support/dynalite.ts';

let dyn: Dynalite;
let counting: CountingClient;
const TABLE = 'fanout-ledger';
beforeAll(async () => {
  dyn = await startDynalite();
  await dyn.createLedgerTable(TABLE);
  counting = dyn.client();
});
afterAll(async () => {
  counting.client.destroy();
  await dyn.close();
});

let n = 0;
function job(chunks: number, chunkSize = 10): JobMeta {
  const id = `0190a000-0000-7000-8000-${String(++n).padStart(12, '0')}`;
  return { jobId: id, createdAt: new Date().toISOString(), options: parseJobOptions({ chunkSize }), total: chunks * chunkSize, chunks };
}

/** One chunk's counts: `ok` successes (200) and `fail` timeouts, with latencies. */
function counts(ok: number, fail: number): Counts {
  const c = emptyCounts();
  c.count = ok + fail;
  c.succeeded = ok;
  c.failed = fail;
  c.bytes = ok * 100;
  if (ok) c.byStatus['200'] = ok;
  if (fail) c.byError.timeout = fail;
  c.latency = { '57': ok, '90': fail };
  c.queued = { '30': ok };
  c.queuedTotalMs = ok * 10.5;
  c.durationTotalMs = ok * 2.5;
  return c;
}

const ledgers: [string, () => Ledger, number][] = [
  ['in memory', () => new MemoryLedger(), 3],
  ['on DynamoDB (dynalite), shards of 3 chunks', () => new DynamoLedger(counting.client, TABLE, { shardSize: 3 }), 3],
];

describe.each(ledgers)('the ledger %s', (_name, make) => {
  it('counts each chunk once, however often it is recorded, and completes after the last', async () => {
    const ledger = make();
    const j = job(7);
    const outcomes = [];
    for (const chunk of [0, 1, 2, 2, 3, 4, 5, 0]) outcomes.push(await ledger.recordChunk(j, chunk, counts(9, 1)));
    expect(outcomes.map((o) => o.counted)).toEqual([true, true, true, false, true, true, true, false]);
    expect(outcomes.every((o) => !o.complete)).toBe(true);
    const last = await ledger.recordChunk(j, 6, counts(10, 0));
    expect(last).toMatchObject({ complete: true, counted: true });
    // A redelivery of any chunk after the end reports completion again (a dead finisher is replaced).
    expect(await ledger.recordChunk(j, 3, counts(9, 1))).toMatchObject({ complete: true, counted: false });
    const progress = await ledger.progress(j.jobId);
    expect(progress.chunksDone).toBe(7);
    expect(progress.counts).toEqual({
      count: 70,
      succeeded: 64,
      failed: 6,
      bytes: 6400,
      byStatus: { '200': 64 },
      byError: { timeout: 6 },
      latency: { '57': 64, '90': 6 },
      queued: { '30': 64 },
      queuedTotalMs: 672,
      durationTotalMs: 160,
    });
    expect(progress.lostChunks).toEqual([]);
  });

  it('concurrent recordings of the same chunks count once and exactly one sees completion first', async () => {
    const ledger = make();
    const j = job(6);
    const all = await Promise.all([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5].map((c) => ledger.recordChunk(j, c, counts(1, 0))));
    expect(all.filter((o) => o.counted)).toHaveLength(6);
    expect((await ledger.progress(j.jobId)).counts.count).toBe(6);
    expect((await ledger.recordChunk(j, 5, counts(1, 0))).complete).toBe(true);
  });

  it('lost chunks are counted as failed and named', async () => {
    const ledger = make();
    const j = job(2);
    await ledger.recordChunk(j, 0, counts(10, 0));
    const lost = { ...emptyCounts(), count: 10, failed: 10, byError: { chunk_failed: 10 } };
    expect((await ledger.recordChunk(j, 1, lost, { lost: true })).complete).toBe(true);
    const progress = await ledger.progress(j.jobId);
    expect(progress).toMatchObject({ chunksDone: 2, lostChunks: [1] });
    expect(progress.counts).toMatchObject({ count: 20, succeeded: 10, failed: 10, byError: { chunk_failed: 10 } });
  });

  it('one finisher: the first owner claims, another is refused, the same owner may claim again, a lapsed claim is taken over', async () => {
    const ledger = make();
    const j = job(1);
    expect(await ledger.claimFinish(j.jobId, 'chunk#0')).toBe(true);
    expect(await ledger.claimFinish(j.jobId, 'cancel')).toBe(false);
    expect(await ledger.claimFinish(j.jobId, 'chunk#0')).toBe(true);
    // A claim past its lease (its holder died and is not coming back) may be taken over.
    vi.useFakeTimers({ now: Date.now() + LEDGER_DEFAULTS.claimLeaseMs + 1_000, toFake: ['Date'] });
    try {
      expect(await ledger.claimFinish(j.jobId, 'finalize')).toBe(true);
      expect(await ledger.claimFinish(j.jobId, 'chunk#0')).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the DynamoDB ledger', () => {
  it('a crash between the shard update and the job update heals on redelivery', async () => {
    const ledger = new DynamoLedger(counting.client, TABLE, { shardSize: 2 });
    const j = job(2);
    await ledger.recordChunk(j, 0, counts(1, 0));
    // The delivery of chunk 1 counted it in its shard and died before adding the shard to the job.
    const crashing = new DynamoLedger(counting.client, TABLE, { shardSize: 2 });
    (crashing as unknown as { addShard: () => Promise<number> }).addShard = async () => {
      throw new Error('killed');
    };
    await expect(crashing.recordChunk(j, 1, counts(1, 0))).rejects.toThrow('killed');
    // Its redelivery is not counted again but completes the job.
    expect(await ledger.recordChunk(j, 1, counts(1, 0))).toMatchObject({ complete: true, counted: false });
    expect((await ledger.progress(j.jobId)).counts.count).toBe(2);
  });

  it('costs a constant number of requests per chunk and per progress call, whatever the job size', async () => {
    const perJob = async (chunks: number) => {
      // Shards of 50 here to keep the test quick; the default is 1,000 (the arithmetic is the same).
      const ledger = new DynamoLedger(counting.client, TABLE, { shardSize: 50 });
      const j = job(chunks);
      counting.reset();
      let complete = false;
      for (let c = 0; c < chunks; c++) complete = (await ledger.recordChunk(j, c, counts(8, 2))).complete;
      expect(complete).toBe(true);
      const recording = counting.total();
      const recordingRequests = Object.fromEntries(counting.requests);
      counting.reset();
      const progress = await ledger.progress(j.jobId);
      expect(progress.chunksDone).toBe(chunks);
      return { recording, progress: counting.total(), requests: recordingRequests, progressRequests: Object.fromEntries(counting.requests) };
    };
    const small = await perJob(10);
    const large = await perJob(300);
    // One UpdateItem per chunk, plus one per full shard (the shard joins the job item).
    expect(small.recording).toBe(10 + 1);
    expect(large.recording).toBe(300 + 6);
    expect(large.requests).toEqual({ UpdateItemCommand: 306 });
    // One Query (one page holds the shard items: 20 of them for 20,000 chunks by default).
    expect(small.progress).toBe(1);
    expect(large.progress).toBe(1);
    expect(large.progressRequests).toEqual({ QueryCommand: 1 });
  }, 60_000);
});
