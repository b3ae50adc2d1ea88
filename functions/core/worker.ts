/**
 * The worker: turns one chunk message into one result file. Written once against the ports, used by
 * the embedded runtime and the AWS worker function alike.
 *
 * Exactly one record per item, whatever happens, rests on these rules:
 * - the result file is created only if absent, so of two deliveries of a message only one file wins;
 * - the chunk's summary is computed from the file that won, and also created only if absent;
 * - the chunk is then counted in the job's ledger, once per chunk however often it is delivered, and
 *   the delivery that completes the job finishes it (core/finish.ts): nothing is listed per chunk;
 * - every path that gives up on a chunk (cancel, last receive) still writes a record per item.
 */
import { setMaxListeners } from 'node:events';
import { countResults, writeChunkFile, type ChunkFileStore } from './chunk-writer.ts';
import { loadBodyText } from './engine/body-text-loader.ts';
import { CONTINUATION_DEFAULTS, TimeBudget, markPart, newDeliveryId, partsChain, removeParts, type PartsChain } from './continuation.ts';
import { addCounts, emptyCounts, type Counts } from './counts.ts';
import type { FetchResult } from './engine/fetch-item.ts';
import type { ByteBudget, Fetcher } from './engine/fetcher.ts';
import type { IndexedItem } from './input.ts';
import { chunkMessage, chunkMessageSchema, loadJob, type ChunkMessage, type JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { parseNdjsonGz } from './ndjson.ts';
import type { ObjectStore } from './ports.ts';
import { isStoreFull } from './store-errors.ts';
import { duplicateRecord, failedRecord, isStringLimitError, makeRecord, tooLargeRecord, withItemFields, type FetchRecord } from './record.ts';
import { finishJob, type FinishDeps } from './finish.ts';
import { envSecrets, resolveHeaderEnv, type SecretSource } from './header-env.ts';
import type { JobOptions } from './options.ts';
import { compareResult, conditionalItem, itemKey, lookupBaseline } from './baseline.ts';
import { HANDED_ON, inOrder } from './in-order.ts';
import { ledgerFor, type RecordOptions } from './ledger.ts';
import type { ChunkSummary } from './status.ts';

/** Worker defaults, stated once. */
export const WORKER_DEFAULTS = {
  /** How often a running chunk looks for the job's cancel marker in the store. */
  cancelPollMs: 1_000,
} as const;

export interface WorkerDeps extends FinishDeps {
  fetcher: Fetcher;
  /** Called as each record is made, in completion order (progress bars). */
  onRecord?: (jobId: string, record: FetchRecord) => void;
  /** An extra cancellation source for a job (the embedded runtime aborts its workers directly). */
  cancelSignal?: (jobId: string) => AbortSignal | undefined;
  cancelPollMs?: number;
  /** Where the `headerEnv` option's variables are read (default: this process's environment). */
  headerSecrets?: SecretSource;
  /**
   * Keep what a delivery without a time budget fetched as part files, cut this often (ms), so a
   * process stopped or killed mid-chunk refetches only what was not yet kept (the embedded runtime
   * sets it; undefined: the chunk is written only when it is done).
   */
  partEveryMs?: number;
  /**
   * Called when a full store (ENOSPC, a quota) refused records this delivery holds in memory (a
   * chunk's first part, see FIRST_PART_HELD_BYTES): it reports the error and resolves after a
   * backoff, and the write is tried again, so nothing is fetched twice; it rejects to give up (a
   * stopping runtime). Unset: the error fails the delivery, which the queue retries.
   */
  waitForSpace?: (error: unknown, tries: number) => Promise<void>;
}

/** `lost`: not even chunk_failed records could be written; the chunk is counted as failed in the ledger. */
export type ChunkOutcome = 'written' | 'already-done' | 'lost-race' | 'chunk-failed' | 'continued' | 'lost';

export interface ChunkResult {
  jobId: string;
  chunk: number;
  outcome: ChunkOutcome;
  counts: Counts;
  /** With `continued`: the message to enqueue so another delivery finishes the chunk. */
  continuation?: string;
}

export interface ProcessOptions {
  /** The queue's last delivery: a failure then writes `chunk_failed` records instead of throwing. */
  finalReceive?: boolean;
  /**
   * Epoch ms by which this delivery must be done (a Lambda's deadline). With it, the delivery
   * keeps what it fetched as a part file and hands the rest on when time runs short.
   */
  deadline?: number;
  /** Time kept back before the deadline (default CONTINUATION_DEFAULTS.marginMs). */
  marginMs?: number;
}

/** Parses a queue message body. */
export function parseChunkMessage(body: string): ChunkMessage {
  return chunkMessageSchema.parse(JSON.parse(body));
}

async function readChunkItems(store: ObjectStore, jobId: string, chunk: number): Promise<IndexedItem[]> {
  const data = await store.get(layout.input(jobId, chunk));
  if (!data) throw new Error(`chunk input ${layout.input(jobId, chunk)} is missing`);
  // Read whole: a chunk input is at most chunkSize lines, all held as items anyway.
  return parseNdjsonGz<IndexedItem>(data);
}

/** Writes the chunk's summary (if absent), then counts the chunk in the ledger. */
async function markChunkDone(deps: WorkerDeps, job: JobMeta, chunk: number, counts: Counts): Promise<void> {
  const summary: ChunkSummary = { chunk, ...counts, writtenAt: new Date().toISOString() };
  await deps.store.put(layout.chunkDone(job.jobId, chunk), JSON.stringify(summary), {
    ifAbsent: true,
    contentType: 'application/json',
  });
  await countChunk(deps, job, chunk, counts);
}

/**
 * Adds a finished chunk to the job's ledger (idempotent) and, when that completes the job, finishes
 * it: constant cost per chunk, nothing listed.
 *
 * @example
 * await countChunk(deps, job, 4, counts); // the chunk that completes the job writes its manifest
 */
export async function countChunk(deps: FinishDeps, job: JobMeta, chunk: number, counts: Counts, options: RecordOptions = {}): Promise<void> {
  const ledger = deps.ledger ?? ledgerFor(deps.store);
  const { complete } = await ledger.recordChunk(job, chunk, counts, options);
  if (complete) await finishJob({ ...deps, ledger }, job, `chunk#${chunk}`);
}

/** Turns a fetch result into the record to store, attaching the body as the job asks. */
async function withBody(store: ObjectStore, job: JobMeta, result: FetchResult): Promise<FetchRecord> {
  const { record, body } = result;
  if (body === null || job.options.bodies === 'none') return record;
  if (job.options.bodies === 'inline') {
    const { encodeBody } = await loadBodyText();
    const encoded = encodeBody(body, result.contentType, record.truncated);
    result.body = null; // the bytes are in the string now: let them go before the record waits its turn
    return makeRecord(record, encoded);
  }
  const key = layout.body(job.jobId, record.index);
  await store.put(key, body, { contentType: result.contentType ?? 'application/octet-stream' });
  result.body = null;
  return makeRecord(record, { bodyKey: key });
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
 * @returns `continued` with a `continuation` message when the time budget ran out first.
 * @throws when the chunk could not be written and another delivery should try again.
 * @example
 * await processChunk(deps, message.body, { finalReceive: message.receiveCount >= queue.maxReceiveCount });
 */
export async function processChunk(deps: WorkerDeps, body: string, options: ProcessOptions = {}): Promise<ChunkResult> {
  const message = parseChunkMessage(body);
  const { jobId, chunk } = message;
  const job = await loadJob(deps.store, jobId);

  const summary = await deps.store.get(layout.chunkDone(jobId, chunk));
  if (summary) {
    // A redelivery after the chunk was finished: counting again is a no-op, but the delivery that
    // wrote the summary may have died before counting it or before finishing the job.
    const { chunk: _, writtenAt: __, ...counts } = JSON.parse(summary.toString('utf8')) as ChunkSummary;
    await countChunk(deps, job, chunk, counts);
    // Parts a delivery overlapping the one that finished kept after it (a hand-on): nobody else removes them.
    await removeParts(deps.store, jobId, chunk);
    return { jobId, chunk, outcome: 'already-done', counts: emptyCounts() };
  }
  try {
    return await fetchChunk(deps, job, message, options);
  } catch (error) {
    // A full store is not the chunk's fault: it is retried when space returns, never failed.
    if (!options.finalReceive || isStoreFull(error)) throw error;
    return failChunk(deps, job, chunk, error);
  }
}

async function fetchChunk(deps: WorkerDeps, job: JobMeta, message: ChunkMessage, { deadline, marginMs }: ProcessOptions): Promise<ChunkResult> {
  const { store, fetcher } = deps;
  const { jobId } = job;
  const { chunk } = message;
  const resultsKey = layout.results(jobId, chunk);
  if (await store.exists(resultsKey)) {
    // A delivery wrote the file but died before its summary: finish its work.
    const counts = await countResults(store, resultsKey);
    await markChunkDone(deps, job, chunk, counts);
    await removeParts(store, jobId, chunk); // parts it may have left
    return { jobId, chunk, outcome: 'lost-race', counts };
  }

  const budgeted = deadline !== undefined && message.continuation < CONTINUATION_DEFAULTS.maxContinuations;
  // Earlier deliveries may have handed this chunk on: start after what they kept.
  const chain = await partsChain(store, jobId, chunk);
  const { parts, next } = chain;
  const items = (await readChunkItems(store, jobId, chunk)).slice(next);
  // Values of headerEnv are read here, per chunk, and live only in this options object (never stored).
  const { options, headerError } = await withHeaderEnv(job.options, deps.headerSecrets);
  // With a baseline: its records for these items only (bounded by the chunk, see core/baseline.ts).
  const previous = options.since ? await lookupBaseline(store, options.since, chunk, items) : undefined;
  const time = budgeted ? new TimeBudget(deadline, options.timeoutMs, marginMs) : undefined;
  const controller = new AbortController();
  const stopWatching = watchCancel(deps, jobId, controller);
  if (await store.exists(layout.cancel(jobId))) controller.abort(new Error('cancelled'));
  const { slots, budget, release } = fetcher.acquire(jobId, options);
  const cancel = controller.signal;
  const signal = time ? AbortSignal.any([cancel, time.hard.signal]) : cancel;
  // Every request in flight listens to it: that is by design, not a leak.
  setMaxListeners(0, cancel, signal);
  let handedOn = false;

  const run = async (item: IndexedItem): Promise<FetchRecord | typeof HANDED_ON> => {
    if (time && !cancel.aborted && !time.canStart()) return (handedOn = true), HANDED_ON;
    if (item.duplicateOf !== undefined) {
      // The `dedupe` option: its first occurrence is fetched; this line only points at it.
      const record = duplicateRecord(item as IndexedItem & { duplicateOf: number });
      deps.onRecord?.(jobId, record);
      return record;
    }
    if (cancel.aborted) {
      const record = failedRecord(item, 'cancelled', 'the job was cancelled before this URL was fetched');
      deps.onRecord?.(jobId, record);
      return record;
    }
    if (headerError !== undefined) {
      // No request goes out without the credential it was meant to carry.
      const record = failedRecord(item, 'internal', headerError);
      deps.onRecord?.(jobId, record);
      return record;
    }
    const prev = previous?.get(itemKey(item));
    const sent = previous ? conditionalItem(item, options, prev) : item;
    let result = await fetcher.fetch(sent, options, signal);
    if (time?.hard.signal.aborted && !cancel.aborted && result.record.error?.code === 'cancelled') return (handedOn = true), HANDED_ON;
    if (previous) result = compareResult(result, prev, sent !== item);
    // Most records keep no body (bodies none, or nothing came): no await for them.
    const kept =
      result.body === null || job.options.bodies === 'none'
        ? result.record
        : await withBody(store, job, result).catch((error) => {
            // A body too large to encode into the record fails its URL alone.
            if (!isStringLimitError(error)) throw error;
            return tooLargeRecord(result.record, `the body (${result.record.bytes} bytes) is too large to keep in the record: ${(error as Error).message}`);
          });
    const record = withItemFields(kept, item);
    deps.onRecord?.(jobId, record);
    return record;
  };

  try {
    if (!time && deps.partEveryMs !== undefined) {
      const outcome = await writeInParts(store, job, chunk, chain, inOrder(items, run, slots, budget, chunk), deps.partEveryMs, deps.waitForSpace).catch(async (error: unknown) => {
        // A delivery that finished the chunk meanwhile removed its parts, this one's too: its result
        // file stands, whatever went wrong here.
        if (!isStoreFull(error) && (await store.exists(resultsKey).catch(() => false))) return { counts: await countResults(store, resultsKey), created: false };
        throw error;
      });
      await markChunkDone(deps, job, chunk, outcome.counts!);
      // Also when this delivery wrote none: another (dead, or overlapping) may have.
      await removeParts(store, jobId, chunk);
      return { jobId, chunk, outcome: outcome.created ? 'written' : 'lost-race', counts: outcome.counts! };
    }
    // What this delivery keeps if it runs out of time: a part of its own name (a leftover of a dead
    // delivery at the same position cannot block it), which counts once marked.
    const partKey = time ? layout.deliveryPart(jobId, chunk, next, newDeliveryId()) : undefined;
    const outcome = await writeChunkFile(store, { resultsKey, prefixParts: parts, prefixCounts: chain.counts, partKey }, inOrder(items, run, slots, budget, chunk), () => !handedOn);
    if (handedOn) {
      if (outcome.partWritten && outcome.written > 0) await markPart(store, jobId, chunk, next, next + outcome.written, outcome.own, partKey);
      return { jobId, chunk, outcome: 'continued', counts: emptyCounts(), continuation: chunkMessage(jobId, chunk, message.continuation + 1) };
    }
    await markChunkDone(deps, job, chunk, outcome.counts!);
    // Also when this delivery read none: one overlapping it may have kept some meanwhile.
    await removeParts(store, jobId, chunk);
    return { jobId, chunk, outcome: outcome.created ? 'written' : 'lost-race', counts: outcome.counts! };
  } finally {
    controller.abort(new Error('chunk finished'));
    time?.dispose();
    stopWatching();
    release();
  }
}

/**
 * The job's options with the `headerEnv` values added to its headers, or why they cannot be (a
 * variable not set: the chunk's records say so, naming the variable).
 */
async function withHeaderEnv(options: JobOptions, source: SecretSource | undefined): Promise<{ options: JobOptions; headerError?: string }> {
  const wanted = options.headerEnv ?? {};
  if (Object.keys(wanted).length === 0) return { options };
  const resolved = await resolveHeaderEnv(wanted, source ?? envSecrets());
  if ('error' in resolved) return { options, headerError: resolved.error };
  return { options: { ...options, headers: { ...options.headers, ...resolved.headers } } };
}

/**
 * Gzip bytes of a fresh chunk's first part held in memory until the part is cut: a chunk that ends
 * before (most do, in one part period) is written straight to its result file, without a part
 * file, its folder and their removal (about ten file operations a chunk). Past this many bytes
 * (records with large bodies) the part goes to its file as usual.
 */
const FIRST_PART_HELD_BYTES = 4 * 1024 * 1024;

/**
 * Writes a chunk's records as a chain of part files, each cut `everyMs` after it began (also while
 * the next record is still being fetched), then the result file as the parts' bytes in order: a
 * delivery that dies keeps every part it marked, and the next one starts after them
 * (see {@link partsChain}). A fresh chunk that ends within its first part has no part file: see
 * {@link FIRST_PART_HELD_BYTES}.
 *
 * Each delivery writes part files of its own name, and a part counts once it is marked (one mark a
 * position, only if absent): a delivery running at the same time can neither delete nor replace
 * them, and the mark says which file holds the range. A delivery that finds its position marked by
 * another stops (the queue tries it again; by then the other has gone on or finished).
 */
async function writeInParts(
  store: ObjectStore,
  job: JobMeta,
  chunk: number,
  chain: PartsChain,
  records: AsyncGenerator<FetchRecord[]>,
  everyMs: number,
  waitForSpace?: WorkerDeps['waitForSpace'],
): Promise<{ counts: Counts | null; created: boolean }> {
  const { jobId } = job;
  const parts = [...chain.parts];
  let next = chain.next;
  const counts = chain.counts && structuredClone(chain.counts);
  const resultsKey = layout.results(jobId, chunk);
  const delivery = newDeliveryId();
  // The records being waited for; a cut leaves them to head the next part.
  let pending: Promise<IteratorResult<FetchRecord[]>> | undefined = records.next();
  let ended = false;
  try {
    while (!ended) {
      const head = await pending!;
      pending = undefined;
      if (head.done) break;
      // One timer per part: the part is cut when it fires, also while the next record is awaited.
      let cut = false;
      let wake: ((step: IteratorResult<FetchRecord[]> | 'cut') => void) | undefined;
      const timer = setTimeout(() => {
        cut = true;
        wake?.('cut');
      }, everyMs);
      async function* segment(): AsyncGenerator<FetchRecord[]> {
        try {
          yield head.value as FetchRecord[];
          for (;;) {
            const step = (pending ??= records.next());
            if (cut) return;
            const raced = await new Promise<IteratorResult<FetchRecord[]> | 'cut'>((resolve, reject) => {
              wake = resolve;
              step.then(resolve, reject);
            });
            wake = undefined;
            if (raced === 'cut') return;
            pending = undefined;
            if (raced.done) return void (ended = true);
            yield raced.value;
          }
        } finally {
          clearTimeout(timer);
        }
      }
      const key = layout.deliveryPart(jobId, chunk, next, delivery);
      const held = parts.length === 0 && next === 0 && counts ? heldFirstPart(store, key, resultsKey, () => ended, waitForSpace) : undefined;
      const outcome = await writeChunkFile(held ?? store, { resultsKey: key }, segment());
      const { written, created, own } = outcome;
      if (held?.wroteResults) return { counts: outcome.counts, created };
      if (!created) throw new Error(`part file ${key} exists already`); // a name of this delivery's own
      // The last part needs no mark: the result file is made from the parts at once (a delivery
      // killed in between refetches that part only).
      if (!ended && !(await markPart(store, jobId, chunk, next, next + written, own, key))) {
        throw new Error(`chunk ${chunk}: another delivery kept items from ${next} on first; this one stops (the queue tries the chunk again)`);
      }
      if (counts) addCounts(counts, own);
      parts.push(key);
      next += written;
    }
  } finally {
    // With a record still awaited, the generator closes once it settles (the caller aborts it).
    pending?.catch(() => {});
    const closing = records.return(undefined);
    if (pending) closing.catch(() => {});
    else await closing;
  }
  if (parts.length === 1 && counts && store.copyIfAbsent) {
    // One part holds the whole chunk: the result file is that file.
    const created = await store.copyIfAbsent(parts[0]!, resultsKey);
    return { counts: created ? counts : await countResults(store, resultsKey), created };
  }
  async function* none(): AsyncGenerator<FetchRecord[]> {}
  const outcome = await writeChunkFile(store, { resultsKey, prefixParts: parts, prefixCounts: counts }, none());
  return { counts: outcome.counts, created: outcome.created };
}

/**
 * The store a fresh chunk's first part is written through: its bytes are held until the part ends,
 * then put as the result file if the chunk ended with it (only if absent, like any result file), else
 * as the part file; past {@link FIRST_PART_HELD_BYTES} they go on to the part file as they come.
 * `wroteResults` says which. Held bytes that a full store refuses are written again after
 * `waitForSpace` (see WorkerDeps).
 */
function heldFirstPart(
  store: ObjectStore,
  partKey: string,
  resultsKey: string,
  chunkEnded: () => boolean,
  waitForSpace?: WorkerDeps['waitForSpace'],
): ChunkFileStore & { wroteResults: boolean } {
  const target: ChunkFileStore & { wroteResults: boolean } = {
    wroteResults: false,
    // Once the part went to the result file, what is read back as the part is that file.
    getStream: (key, options) => store.getStream(target.wroteResults && key === partKey ? resultsKey : key, options),
    put: (key, body, options) => put(key, body, options),
  };
  const put: ObjectStore['put'] = async (key, body, options) => {
    if (key !== partKey || typeof body === 'string' || body instanceof Uint8Array) return store.put(key, body, options);
    const pieces = body[Symbol.asyncIterator]();
    const held: Uint8Array[] = [];
    let size = 0;
    for (let step = await pieces.next(); !step.done; step = await pieces.next()) {
      held.push(step.value);
      size += step.value.length;
      if (size > FIRST_PART_HELD_BYTES) return store.put(partKey, heldThenRest(held, pieces), options);
    }
    const bytes = Buffer.concat(held, size);
    if (chunkEnded()) target.wroteResults = true;
    const to = target.wroteResults ? resultsKey : partKey;
    // The records are in memory: a full store is waited out, not fetched again.
    for (let tries = 1; ; tries++) {
      try {
        return await store.put(to, bytes, options);
      } catch (error) {
        if (!waitForSpace || !isStoreFull(error)) throw error;
        await waitForSpace(error, tries);
      }
    }
  };
  return target;
}

async function* heldThenRest(held: Uint8Array[], rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* held;
  held.length = 0;
  for (let step = await rest.next(); !step.done; step = await rest.next()) yield step.value;
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
  // Records a delivery kept before running out of time stay; only the rest are failed.
  const { parts, next, counts: prefixCounts } = await partsChain(deps.store, job.jobId, chunk);
  async function* records() {
    yield items.slice(next).map((item) => failedRecord(item, 'chunk_failed', message));
  }
  const { counts, created } = await writeChunkFile(deps.store, { resultsKey: layout.results(job.jobId, chunk), prefixParts: parts, prefixCounts }, records());
  await markChunkDone(deps, job, chunk, counts!);
  return { jobId: job.jobId, chunk, outcome: created ? 'chunk-failed' : 'lost-race', counts: counts! };
}
