/**
 * The ledger: a job's running totals, kept beside the store so that finishing a chunk and asking for
 * a job's status cost a bounded number of requests whatever the job's size (the fan-in counter of
 * serverless designs). Chunk summaries (chunks/CHUNK.json) stay the per-chunk record; the ledger is
 * what completion and status read.
 *
 * Three rules make it safe under at-least-once delivery:
 * - `recordChunk` is idempotent per (job, chunk): a redelivered chunk is never counted twice, and a
 *   repeat call reports completion again, so a finisher that died is replaced by the redelivery;
 * - `claimFinish` lets one finisher proceed; the same owner (the same chunk's redelivery) may claim
 *   again, so a claim never blocks the message that holds it;
 * - the manifest is still created only if absent, so it is written exactly once.
 *
 * Implementations: {@link MemoryLedger} (the embedded runtime; in the main thread, rebuilt from the
 * chunk summaries once per process), {@link StoreLedger} (the old listing method, O(chunks) per call,
 * kept only for AWS setups without a ledger table) and the DynamoDB ledger (functions/aws).
 */
import { addCounts, emptyCounts, type Counts } from './counts.ts';
import type { JobMeta } from './job.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';

/** What recording a chunk tells its caller. */
export interface RecordOutcome {
  /** Every chunk of the job is now counted. */
  complete: boolean;
  /** Chunks counted so far (may lag in ledgers that only know it per shard; never over). */
  chunksDone: number;
  /** False when the chunk had been counted before (a redelivery). */
  counted: boolean;
}

/** A job's summed counts, as status and the manifest need them. */
export interface LedgerProgress {
  chunksDone: number;
  counts: Counts;
  /** Chunks that could not even get chunk_failed records (their result file is missing). */
  lostChunks: number[];
  /** When a chunk was last counted (ISO), null before the first. */
  updatedAt: string | null;
}

export interface RecordOptions {
  /** The chunk's records could not be written: it is counted (as chunk_failed) and marked lost. */
  lost?: boolean;
}

export interface Ledger {
  /**
   * Adds a chunk's counts once; reports whether the job is now complete.
   *
   * @example
   * const { complete } = await ledger.recordChunk(job, 3, counts);
   */
  recordChunk(job: JobMeta, chunk: number, counts: Counts, options?: RecordOptions): Promise<RecordOutcome>;
  /** The job's totals, in O(1) requests. */
  progress(jobId: string): Promise<LedgerProgress>;
  /**
   * True for the first owner to ask, again for that same owner (its redelivery), and for anyone once
   * a claim is older than LEDGER_DEFAULTS.claimLeaseMs (its holder died and was not redelivered).
   */
  claimFinish(jobId: string, owner: string): Promise<boolean>;
  /** Drops what the process holds for a finished job (the manifest answers for it from now on). */
  forget?(jobId: string): void;
}

/**
 * Items in a chunk: every chunk is full except the last (both planners fill chunks in order).
 *
 * @example
 * chunkItemCount({ total: 1_200, chunks: 3, options: { chunkSize: 500 } }, 2) // 200
 */
export function chunkItemCount(job: Pick<JobMeta, 'total' | 'chunks' | 'options'>, chunk: number): number {
  const size = job.options.chunkSize;
  return chunk < job.chunks - 1 ? size : job.total - size * (job.chunks - 1);
}

/**
 * Counts of a chunk whose items all failed with `chunk_failed` without a result file.
 *
 * @example
 * lostChunkCounts(500) // { count: 500, failed: 500, byError: { chunk_failed: 500 }, ... }
 */
export function lostChunkCounts(items: number): Counts {
  return { ...emptyCounts(), count: items, failed: items, byError: { chunk_failed: items } };
}

interface JobTally {
  done: Set<number>;
  counts: Counts;
  lost: number[];
  updatedAt: string | null;
  claimedBy: string | null;
  claimedAt: number;
}

/** A chunk as the ledger is rebuilt from: its summary's counts. */
export interface ChunkEntry {
  chunk: number;
  counts: Counts;
  writtenAt?: string;
}

/** Where a {@link MemoryLedger} finds what was counted before this process started. */
export type LedgerLoader = (jobId: string) => Promise<ChunkEntry[]>;

/**
 * Reads every chunk summary of a job: the O(chunks) rebuild, done once per job per process.
 *
 * @example
 * const ledger = new MemoryLedger(summaryLoader(store));
 */
export function summaryLoader(store: ObjectStore): LedgerLoader {
  return async (jobId) => {
    const keys: string[] = [];
    for await (const key of store.list(layout.chunksPrefix(jobId))) if (key.endsWith('.json')) keys.push(key);
    const entries: ChunkEntry[] = [];
    for (let i = 0; i < keys.length; i += LEDGER_DEFAULTS.rebuildConcurrency) {
      const read = await Promise.all(keys.slice(i, i + LEDGER_DEFAULTS.rebuildConcurrency).map((k) => store.get(k)));
      for (const data of read) {
        if (!data) continue;
        const { chunk, writtenAt, ...counts } = JSON.parse(data.toString('utf8')) as Counts & { chunk: number; writtenAt?: string };
        entries.push({ chunk, counts, writtenAt });
      }
    }
    return entries;
  };
}

/** Ledger defaults, stated once. */
export const LEDGER_DEFAULTS = {
  /** Chunk summaries read at once when a ledger is rebuilt from the store. */
  rebuildConcurrency: 32,
  /** A finish claim older than this may be taken over: longer than any Lambda runs (15 minutes). */
  claimLeaseMs: 20 * 60 * 1000,
} as const;

/**
 * The embedded runtime's ledger: sums in memory, in the one thread that counts. A job it has not
 * seen in this process is rebuilt from the chunk summaries on first use (once).
 *
 * @example
 * const ledger = new MemoryLedger(summaryLoader(store));
 * await ledger.recordChunk(job, 0, counts); // { complete: job.chunks === 1, chunksDone: 1, counted: true }
 */
export class MemoryLedger implements Ledger {
  private readonly jobs = new Map<string, Promise<JobTally>>();

  constructor(private readonly loader?: LedgerLoader) {}

  /** Starts a job known to have nothing counted yet (just planned): no rebuild needed. */
  begin(jobId: string): void {
    if (!this.jobs.has(jobId)) this.jobs.set(jobId, Promise.resolve(newTally()));
  }

  private tally(jobId: string): Promise<JobTally> {
    let tally = this.jobs.get(jobId);
    if (!tally) {
      const loader = this.loader;
      tally = (async () => {
        const t = newTally();
        for (const entry of loader ? await loader(jobId) : []) add(t, entry.chunk, entry.counts, entry.writtenAt ?? null);
        return t;
      })();
      this.jobs.set(jobId, tally);
      tally.catch(() => this.jobs.delete(jobId));
    }
    return tally;
  }

  async recordChunk(job: JobMeta, chunk: number, counts: Counts, options: RecordOptions = {}): Promise<RecordOutcome> {
    const t = await this.tally(job.jobId);
    const counted = !t.done.has(chunk);
    if (counted) {
      add(t, chunk, counts, new Date().toISOString());
      if (options.lost) t.lost.push(chunk);
    }
    return { complete: t.done.size >= job.chunks, chunksDone: t.done.size, counted };
  }

  async progress(jobId: string): Promise<LedgerProgress> {
    const t = await this.tally(jobId);
    return { chunksDone: t.done.size, counts: addCounts(emptyCounts(), t.counts), lostChunks: [...t.lost].sort((a, b) => a - b), updatedAt: t.updatedAt };
  }

  async claimFinish(jobId: string, owner: string): Promise<boolean> {
    const t = await this.tally(jobId);
    const now = Date.now();
    if (t.claimedBy !== null && t.claimedBy !== owner && now - t.claimedAt < LEDGER_DEFAULTS.claimLeaseMs) return false;
    t.claimedBy = owner;
    t.claimedAt = now;
    return true;
  }

  forget(jobId: string): void {
    this.jobs.delete(jobId);
  }

  /** The chunks counted for a job (the embedded runtime re-enqueues the others after a restart). */
  async doneChunks(jobId: string): Promise<ReadonlySet<number>> {
    return (await this.tally(jobId)).done;
  }
}

function newTally(): JobTally {
  return { done: new Set(), counts: emptyCounts(), lost: [], updatedAt: null, claimedBy: null, claimedAt: 0 };
}

function add(t: JobTally, chunk: number, counts: Counts, at: string | null): void {
  if (t.done.has(chunk)) return;
  t.done.add(chunk);
  addCounts(t.counts, counts);
  if (at !== null && (t.updatedAt === null || at > t.updatedAt)) t.updatedAt = at;
}

/**
 * The ledger without a ledger: lists and reads the chunk summaries on every call, O(chunks) each
 * (quadratic over a job). Correct across processes, so it is the fallback on AWS when no ledger
 * table is configured; never the default of the embedded runtime.
 */
export class StoreLedger implements Ledger {
  private readonly load: LedgerLoader;

  constructor(private readonly store: ObjectStore) {
    this.load = summaryLoader(store);
  }

  async recordChunk(job: JobMeta, chunk: number, counts: Counts, options: RecordOptions = {}): Promise<RecordOutcome> {
    // The worker wrote the chunk's summary already; a lost chunk leaves one here, marked lost.
    if (options.lost) await this.store.put(layout.chunkDone(job.jobId, chunk), JSON.stringify({ chunk, ...counts, lost: true }), { ifAbsent: true });
    let done = 0;
    for await (const key of this.store.list(layout.chunksPrefix(job.jobId))) if (key.endsWith('.json')) done++;
    return { complete: done >= job.chunks, chunksDone: done, counted: true };
  }

  async progress(jobId: string): Promise<LedgerProgress> {
    const t = newTally();
    const lost: number[] = [];
    for (const entry of await this.load(jobId)) {
      add(t, entry.chunk, entry.counts, entry.writtenAt ?? null);
      if ((entry.counts as Counts & { lost?: boolean }).lost) lost.push(entry.chunk);
    }
    return { chunksDone: t.done.size, counts: t.counts, lostChunks: lost.sort((a, b) => a - b), updatedAt: t.updatedAt };
  }

  /** No shared claim: the manifest's create-if-absent is the only gate. */
  async claimFinish(): Promise<boolean> {
    return true;
  }
}

/** The ledger each store's callers use unless told otherwise (one per store object, per process). */
const bound = new WeakMap<ObjectStore, Ledger>();

/**
 * Makes `ledger` the one used with `store` by callers that are not given one (status, cancel).
 *
 * @example
 * bindLedger(store, new DynamoLedger(client, table)); // jobStatus(store, id) now reads DynamoDB
 */
export function bindLedger(store: ObjectStore, ledger: Ledger): Ledger {
  bound.set(store, ledger);
  return ledger;
}

/**
 * The ledger bound to `store`; by default an in-memory one rebuilt from the chunk summaries (right
 * for one process that does all the counting, and for a short-lived reader such as the CLI).
 *
 * @example
 * const { counts } = await ledgerFor(store).progress(jobId);
 */
export function ledgerFor(store: ObjectStore): Ledger {
  let ledger = bound.get(store);
  if (!ledger) {
    ledger = new MemoryLedger(summaryLoader(store));
    bound.set(store, ledger);
  }
  return ledger;
}
