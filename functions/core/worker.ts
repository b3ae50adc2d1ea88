/**
 * The worker: turns one chunk message into one result file. Written once against the ports, used by
 * the embedded runtime and the AWS worker function alike.
 *
 * Exactly one record per item, whatever happens, rests on three rules:
 * - the result file is created only if absent, so of two deliveries of a message only one file wins;
 * - the chunk's summary is computed from the file that won, and also created only if absent;
 * - every path that gives up on a chunk (cancel, last receive) still writes a record per item.
 */
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import type { LimitFunction } from 'p-limit';
import { countRecord, emptyCounts, type Counts } from './counts.ts';
import type { FetchResult } from './engine/fetch-item.ts';
import type { ByteBudget, Fetcher } from './engine/fetcher.ts';
import { encodeBody } from './engine/body-text.ts';
import type { IndexedItem } from './input.ts';
import { chunkMessageSchema, loadJob, type ChunkMessage, type JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { gzipOptions, readNdjsonGz } from './ndjson.ts';
import type { ObjectStore } from './ports.ts';
import { failedRecord, serializeRecord, type FetchRecord } from './record.ts';
import { finalizeIfComplete, type ChunkSummary, type Manifest } from './status.ts';

/** Worker defaults, stated once. */
export const WORKER_DEFAULTS = {
  /** How often a running chunk looks for the job's cancel marker in the store. */
  cancelPollMs: 1_000,
} as const;

export interface WorkerDeps {
  store: ObjectStore;
  fetcher: Fetcher;
  /** Called as each record is made, in completion order (progress bars). */
  onRecord?: (jobId: string, record: FetchRecord) => void;
  /** Called once, by the worker that wrote the manifest. */
  onJobFinished?: (manifest: Manifest) => void | Promise<void>;
  /** An extra cancellation source for a job (the embedded runtime aborts its workers directly). */
  cancelSignal?: (jobId: string) => AbortSignal | undefined;
  /**
   * Whether the job may have just finished; when it returns false the (listing) completion check
   * is skipped. The embedded runtime counts chunks in memory; without it, every chunk checks.
   */
  mayBeComplete?: (job: JobMeta, chunk: number) => boolean;
  cancelPollMs?: number;
}

export type ChunkOutcome = 'written' | 'already-done' | 'lost-race' | 'chunk-failed';

export interface ChunkResult {
  jobId: string;
  chunk: number;
  outcome: ChunkOutcome;
  counts: Counts;
}

/** Parses a queue message body. */
export function parseChunkMessage(body: string): ChunkMessage {
  return chunkMessageSchema.parse(JSON.parse(body));
}

async function readChunkItems(store: ObjectStore, jobId: string, chunk: number): Promise<IndexedItem[]> {
  const stream = await store.getStream(layout.input(jobId, chunk));
  if (!stream) throw new Error(`chunk input ${layout.input(jobId, chunk)} is missing`);
  const items: IndexedItem[] = [];
  for await (const item of readNdjsonGz<IndexedItem>(stream)) items.push(item);
  return items;
}

/** Counts of an existing result file: what a chunk's summary must say when another delivery won. */
export async function countResults(store: ObjectStore, key: string): Promise<Counts> {
  const counts = emptyCounts();
  const stream = await store.getStream(key);
  if (!stream) throw new Error(`result file ${key} vanished`);
  for await (const record of readNdjsonGz<FetchRecord>(stream)) countRecord(counts, record);
  return counts;
}

/**
 * Streams records (in index order) into the chunk's gzipped result file, created only if absent.
 *
 * @returns the counts of the file that now holds the chunk, and whether this call wrote it.
 */
export async function writeChunkResults(
  store: ObjectStore,
  jobId: string,
  chunk: number,
  records: AsyncIterable<FetchRecord>,
): Promise<{ counts: Counts; created: boolean }> {
  const key = layout.results(jobId, chunk);
  const counts = emptyCounts();
  const gzip = createGzip(gzipOptions);
  gzip.on('error', () => {}); // surfaced through `put` or the write loop below
  const put = store.put(key, gzip, { ifAbsent: true, contentType: 'application/x-ndjson' });
  // If the store gives up (even before reading a byte), stop producing at once instead of
  // waiting for a 'drain' that will never come.
  let putError: unknown;
  const putFailed = new Promise<never>((_, reject) =>
    put.catch((error) => {
      putError = error;
      gzip.destroy();
      reject(error);
    }),
  );
  putFailed.catch(() => {});
  try {
    for await (const record of records) {
      if (putError) throw putError;
      countRecord(counts, record);
      if (!gzip.write(serializeRecord(record))) await Promise.race([once(gzip, 'drain'), putFailed]);
    }
    gzip.end();
  } catch (error) {
    gzip.destroy(error as Error);
    await put.catch(() => {});
    throw error;
  }
  const created = await put;
  return { counts: created ? counts : await countResults(store, key), created };
}

/** Writes the chunk's summary (if absent) and, if it may be the last one, the job's manifest. */
async function markChunkDone(deps: WorkerDeps, job: JobMeta, chunk: number, counts: Counts): Promise<void> {
  const summary: ChunkSummary = { chunk, ...counts, writtenAt: new Date().toISOString() };
  await deps.store.put(layout.chunkDone(job.jobId, chunk), JSON.stringify(summary), {
    ifAbsent: true,
    contentType: 'application/json',
  });
  await checkFinished(deps, job, chunk);
}

/** Writes the job's manifest if this chunk may have been its last. */
async function checkFinished(deps: WorkerDeps, job: JobMeta, chunk: number): Promise<void> {
  if (deps.mayBeComplete && !deps.mayBeComplete(job, chunk)) return;
  const manifest = await finalizeIfComplete(deps.store, job);
  if (manifest) await deps.onJobFinished?.(manifest);
}

/**
 * Yields `run(item)` for every item in index order. Items start as soon as the limit allows,
 * except while finished-but-unwritten results hold more than the budget: then the next items wait
 * for the head of the line, so a slow URL holds back memory, not the whole chunk.
 */
async function* inOrder(
  items: IndexedItem[],
  run: (item: IndexedItem) => Promise<FetchRecord>,
  limit: LimitFunction,
  budget: ByteBudget,
): AsyncGenerator<FetchRecord> {
  const pending: (Promise<FetchRecord> | undefined)[] = new Array(items.length);
  const sizes = new Array<number>(items.length).fill(0);
  let started = 0;
  let closed = false;
  try {
    for (let i = 0; i < items.length; i++) {
      while (started < items.length && (started === i || budget.available)) {
        const at = started++;
        const promise = limit(() => run(items[at]!)).then((record) => {
          if (!closed) {
            sizes[at] = recordSize(record);
            budget.used += sizes[at]!;
          }
          return record;
        });
        promise.catch(() => {}); // awaited in order below; a failure ends the chunk there
        pending[at] = promise;
      }
      const result = await pending[i]!;
      budget.used -= sizes[i]!;
      sizes[i] = 0;
      pending[i] = undefined;
      yield result;
    }
  } finally {
    // Results this generator will never yield (the chunk failed) give their budget back.
    closed = true;
    for (let i = 0; i < items.length; i++) budget.used -= sizes[i]!;
  }
}

/** Rough bytes a record holds in memory, for the reorder budget. */
function recordSize(record: FetchRecord): number {
  return 512 + (record.body?.length ?? 0);
}

/** Turns a fetch result into the record to store, attaching the body as the job asks. */
async function withBody(store: ObjectStore, job: JobMeta, result: FetchResult): Promise<FetchRecord> {
  const { record, body } = result;
  if (body === null || job.options.bodies === 'none') return record;
  if (job.options.bodies === 'inline') {
    const encoded = encodeBody(body, result.contentType, record.truncated);
    record.body = encoded.body;
    record.bodyEncoding = encoded.bodyEncoding;
    return record;
  }
  const key = layout.body(job.jobId, record.index);
  await store.put(key, body, { contentType: result.contentType ?? 'application/octet-stream' });
  record.bodyKey = key;
  return record;
}

/** Watches the store's cancel marker while a chunk runs; aborts `controller` when it appears. */
function watchCancel(deps: WorkerDeps, jobId: string, controller: AbortController): () => void {
  const external = deps.cancelSignal?.(jobId);
  const onAbort = () => controller.abort(new Error('cancelled'));
  external?.addEventListener('abort', onAbort, { once: true });
  if (external?.aborted) onAbort();
  const timer = setInterval(() => {
    deps.store.exists(layout.cancel(jobId)).then((yes) => yes && onAbort(), () => {});
  }, deps.cancelPollMs ?? WORKER_DEFAULTS.cancelPollMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    external?.removeEventListener('abort', onAbort);
  };
}

/**
 * Processes one delivery of a chunk message.
 *
 * @param finalReceive true on the queue's last delivery: a failure then writes `chunk_failed`
 *   records instead of throwing, so the chunk's URLs never vanish into the dead-letter queue.
 * @throws when the chunk could not be written and another delivery should try again.
 * @example
 * await processChunk(deps, message.body, { finalReceive: message.receiveCount >= queue.maxReceiveCount });
 */
export async function processChunk(
  deps: WorkerDeps,
  body: string,
  { finalReceive = false }: { finalReceive?: boolean } = {},
): Promise<ChunkResult> {
  const { jobId, chunk } = parseChunkMessage(body);
  const { store } = deps;
  const job = await loadJob(store, jobId);

  if (await store.exists(layout.chunkDone(jobId, chunk))) {
    // A redelivery after the chunk was finished (its manifest check may not have run: do it).
    await checkFinished(deps, job, chunk);
    return { jobId, chunk, outcome: 'already-done', counts: emptyCounts() };
  }
  try {
    return await fetchChunk(deps, job, chunk);
  } catch (error) {
    if (!finalReceive) throw error;
    return failChunk(deps, job, chunk, error);
  }
}

async function fetchChunk(deps: WorkerDeps, job: JobMeta, chunk: number): Promise<ChunkResult> {
  const { store, fetcher } = deps;
  const { jobId, options } = job;
  const resultsKey = layout.results(jobId, chunk);
  if (await store.exists(resultsKey)) {
    // A delivery wrote the file but died before its summary: finish its work.
    const counts = await countResults(store, resultsKey);
    await markChunkDone(deps, job, chunk, counts);
    return { jobId, chunk, outcome: 'lost-race', counts };
  }

  const items = await readChunkItems(store, jobId, chunk);
  const controller = new AbortController();
  const stopWatching = watchCancel(deps, jobId, controller);
  if (await store.exists(layout.cancel(jobId))) controller.abort(new Error('cancelled'));
  const { limit, budget, release } = fetcher.acquire(jobId, options);
  const signal = controller.signal;

  const run = async (item: IndexedItem): Promise<FetchRecord> => {
    const record = signal.aborted
      ? failedRecord(item, 'cancelled', 'the job was cancelled before this URL was fetched')
      : await withBody(store, job, await fetcher.fetch(item, options, signal));
    deps.onRecord?.(jobId, record);
    return record;
  };

  try {
    const { counts, created } = await writeChunkResults(store, jobId, chunk, inOrder(items, run, limit, budget));
    await markChunkDone(deps, job, chunk, counts);
    return { jobId, chunk, outcome: created ? 'written' : 'lost-race', counts };
  } finally {
    controller.abort(new Error('chunk finished'));
    stopWatching();
    release();
  }
}

/** The last delivery failed: every item still gets its record, with `chunk_failed`. */
async function failChunk(deps: WorkerDeps, job: JobMeta, chunk: number, cause: unknown): Promise<ChunkResult> {
  const message = `chunk ${chunk} failed on its last delivery: ${(cause as Error)?.message ?? String(cause)}`.slice(0, 500);
  return writeFailedChunk(deps, job, chunk, message);
}

/**
 * Writes `chunk_failed` records for a chunk that will not be fetched (last delivery failed, or the
 * message reached the dead-letter queue), unless its result file already exists.
 */
export async function writeFailedChunk(deps: WorkerDeps, job: JobMeta, chunk: number, message: string): Promise<ChunkResult> {
  const items = await readChunkItems(deps.store, job.jobId, chunk);
  async function* records() {
    for (const item of items) yield failedRecord(item, 'chunk_failed', message);
  }
  const { counts, created } = await writeChunkResults(deps.store, job.jobId, chunk, records());
  await markChunkDone(deps, job, chunk, counts);
  return { jobId: job.jobId, chunk, outcome: created ? 'chunk-failed' : 'lost-race', counts };
}
