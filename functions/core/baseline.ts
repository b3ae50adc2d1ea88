/**
 * Comparing a run with a baseline run (option `since`): each item finds its record in the baseline,
 * matched by `id` when the item has one, else by URL, at a bounded cost per chunk:
 *
 * - **aligned lists** (same list, same chunk size: the usual case for a schedule): the baseline's
 *   result file of the same chunk number holds every key of the chunk: 1 GET per chunk;
 * - **small baselines** (at most BASELINE_DEFAULTS.directChunks chunks): all of its files are read;
 * - **other lists**: the keys not found in the same-numbered file are looked up in the baseline's
 *   partitioned index (its records hashed by key into BASELINE_DEFAULTS.partitions files, written once,
 *   by the first chunk of any later run that needs them): at most that many GETs per chunk.
 *
 * Only the entries of the chunk's own keys are kept, so memory is bounded by the chunk size whatever
 * the baseline's size. The comparison itself ({@link compareResult}) writes `change` and `previous`
 * into the record; with the baseline's ETag / Last-Modified the request is conditional
 * ({@link conditionalItem}) and a 304 becomes an `unchanged` record with `notModified: true`.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { FetchResult } from './engine/fetch-item.ts';
import { NotFoundError, OptionsError } from './errors.ts';
import type { IndexedItem } from './input.ts';
import { loadJob, type JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { gzipOptions, readNdjsonGz } from './ndjson.ts';
import type { JobOptions } from './options.ts';
import type { ObjectStore } from './ports.ts';
import { makeRecord, type FetchRecord, type PreviousRecord } from './record.ts';

/** Baseline matching, stated once. */
export const BASELINE_DEFAULTS = {
  /** Baselines of at most this many chunks are read whole for each chunk (cheaper than an index). */
  directChunks: 4,
  /** Partition files of a baseline's index (the most GETs a chunk of a non-aligned run makes). */
  partitions: 32,
  /** Characters buffered per partition before they go to its gzip stream. */
  partitionBatchChars: 64 * 1024,
  /**
   * How long a worker waits for the index another worker claimed to build (a million-record baseline
   * takes ~20 s) before building it too (the claimant died: same content, harmless).
   */
  buildWaitMs: 5 * 60 * 1000,
  /** How often a waiting worker looks for the finished index. */
  buildPollMs: 1_000,
} as const;

/** What a run needs of a baseline record: the comparison fields and the validators. */
export interface BaselineEntry extends PreviousRecord {
  etag?: string;
  lastModified?: string;
}

/** A partition line: the key and the entry, short names (one line per baseline record). */
interface PartitionLine {
  k: string;
  s: number | null;
  h: string | null;
  o: boolean;
  b: number;
  e?: string;
  m?: string;
}

/**
 * The matching key: the item's `id` when it has one, else its URL.
 *
 * @example
 * itemKey({ url: 'https://a.example/', id: 7 }) // 'id:7'
 */
export function itemKey(item: { url: string; id?: string | number | null }): string {
  return item.id !== undefined && item.id !== null ? `id:${String(item.id)}` : `url:${item.url}`;
}

/** Validators are sent back as request headers: only visible ASCII (what RFC 9110 allows in them), bounded. */
const SENDABLE = /^[\x20-\x7e]{1,512}$/;

function header(record: FetchRecord, name: string): string | undefined {
  const value = record.headers[name];
  return typeof value === 'string' && SENDABLE.test(value) ? value : undefined;
}

function entryOf(record: FetchRecord): BaselineEntry {
  const entry: BaselineEntry = { status: record.status, sha256: record.sha256, ok: record.ok, bytes: record.notModified ? (record.previous?.bytes ?? 0) : record.bytes };
  const etag = header(record, 'etag');
  const lastModified = header(record, 'last-modified');
  if (etag) entry.etag = etag;
  if (lastModified) entry.lastModified = lastModified;
  return entry;
}

function toLine(key: string, e: BaselineEntry): PartitionLine {
  return { k: key, s: e.status, h: e.sha256, o: e.ok, b: e.bytes, ...(e.etag ? { e: e.etag } : {}), ...(e.lastModified ? { m: e.lastModified } : {}) };
}

function fromLine(l: PartitionLine): BaselineEntry {
  return { status: l.s, sha256: l.h, ok: l.o, bytes: l.b, ...(l.e ? { etag: l.e } : {}), ...(l.m ? { lastModified: l.m } : {}) };
}

/** The partition a key hashes to. */
export function partitionOf(key: string, partitions: number): number {
  return createHash('sha1').update(key).digest().readUInt32BE(0) % partitions;
}

/**
 * Refuses a baseline that does not exist, before anything is written.
 *
 * @throws {OptionsError} naming option `since`.
 * @example
 * await checkBaseline(store, options.since);
 */
export async function checkBaseline(store: ObjectStore, since: string | null | undefined): Promise<void> {
  if (!since) return;
  if (!(await store.exists(layout.job(since)))) throw new OptionsError(`option "since": no job ${since} to compare with`, 'since');
}

/** Store requests a lookup made, for the bench and the tests. */
export interface LookupStats {
  gets: number;
  partitionsRead: number;
}

/** Reads one gzipped NDJSON object, handing each line to `take`; false when it does not exist. */
async function scan<T>(store: ObjectStore, key: string, take: (value: T) => void, stats?: LookupStats): Promise<boolean> {
  const stream = await store.getStream(key);
  if (stats) stats.gets++;
  if (!stream) return false;
  for await (const value of readNdjsonGz<T>(stream)) take(value);
  return true;
}

/**
 * The baseline's entries for a chunk's items (only those keys), keyed by {@link itemKey}.
 *
 * @example
 * const previous = await lookupBaseline(store, job.options.since!, chunk, items);
 * previous.get(itemKey(items[0])) // { status: 200, sha256: '...', ok: true, bytes: 512, etag: '"v1"' }
 */
export async function lookupBaseline(store: ObjectStore, since: string, chunk: number, items: readonly IndexedItem[], stats?: LookupStats): Promise<Map<string, BaselineEntry>> {
  let base: JobMeta;
  try {
    base = await loadJob(store, since);
  } catch (error) {
    if (error instanceof NotFoundError) return new Map(); // removed since: every item is new
    throw error;
  }
  const wanted = new Set(items.map(itemKey));
  const found = new Map<string, BaselineEntry>();
  const takeRecord = (record: FetchRecord) => {
    const key = itemKey(record);
    if (wanted.has(key) && !found.has(key)) found.set(key, entryOf(record));
  };
  if (base.chunks <= BASELINE_DEFAULTS.directChunks) {
    for (let c = 0; c < base.chunks; c++) await scan(store, layout.results(since, c), takeRecord, stats);
    return found;
  }
  if (chunk < base.chunks) await scan(store, layout.results(since, chunk), takeRecord, stats);
  if (found.size === wanted.size) return found;

  const partitions = await ensurePartitions(store, base);
  if (partitions === 0) return found;
  const needed = new Set<number>();
  for (const key of wanted) if (!found.has(key)) needed.add(partitionOf(key, partitions));
  // A partition holds ~1/partitions of the baseline: its lines are matched on their key's text and only
  // the chunk's own are parsed.
  const escaped = new Map<string, string>();
  for (const key of wanted) if (!found.has(key)) escaped.set(JSON.stringify(key).slice(1, -1), key);
  for (const p of [...needed].sort((a, b) => a - b)) {
    if (stats) stats.partitionsRead++;
    const stream = await store.getStream(layout.baselinePartition(since, p));
    if (stats) stats.gets++;
    if (!stream) continue;
    for await (const text of createInterface({ input: stream.pipe(createGunzip()), crlfDelay: Infinity })) {
      // Lines are {"k":"KEY","s":...}: the key's JSON text sits between the first 6 characters and `","s":`.
      const key = escaped.get(text.slice(6, text.indexOf('","s":')));
      if (key !== undefined && !found.has(key)) found.set(key, fromLine(JSON.parse(text) as PartitionLine));
    }
  }
  return found;
}

/**
 * Writes the baseline's partitioned index once (the first run that needs it), streaming: one pass
 * over its result files, one gzip stream per partition. Only a finished baseline is indexed.
 *
 * @returns the number of partitions, 0 when the baseline is not finished.
 */
export async function ensurePartitions(store: ObjectStore, base: JobMeta): Promise<number> {
  const known = indexed.get(store)?.get(base.jobId);
  if (known) return known;
  const marker = await store.get(layout.baselineIndex(base.jobId));
  if (marker) return remember(store, base.jobId, (JSON.parse(marker.toString('utf8')) as { partitions: number }).partitions);
  if (!(await store.exists(layout.manifest(base.jobId)))) return 0;
  // The chunks of a run start together: one builds, the others wait for its marker.
  const claim = JSON.stringify({ at: new Date().toISOString() });
  if (!(await store.put(layout.baselineClaim(base.jobId), claim, { ifAbsent: true, contentType: 'application/json' }))) {
    // A claim older than the wait is a builder that died: build at once rather than wait again.
    const held = await store.get(layout.baselineClaim(base.jobId));
    const claimedAt = held ? Date.parse((JSON.parse(held.toString('utf8')) as { at: string }).at) : 0;
    const until = claimedAt + BASELINE_DEFAULTS.buildWaitMs;
    while (Date.now() < until) {
      await sleep(BASELINE_DEFAULTS.buildPollMs);
      const done = await store.get(layout.baselineIndex(base.jobId));
      if (done) return remember(store, base.jobId, (JSON.parse(done.toString('utf8')) as { partitions: number }).partitions);
    }
  }
  const partitions = BASELINE_DEFAULTS.partitions;
  const writers = Array.from({ length: partitions }, (_, p) => {
    const gzip = createGzip(gzipOptions);
    const put = store.put(layout.baselinePartition(base.jobId, p), gzip, { contentType: 'application/x-ndjson' });
    put.catch(() => {});
    return { gzip, put, pending: '' };
  });
  let failure: unknown;
  const failed = new Promise<never>((_, reject) => {
    for (const w of writers)
      w.put.catch((error) => {
        failure ??= error;
        reject(error);
      });
  });
  failed.catch(() => {});
  const flush = async (w: (typeof writers)[number]) => {
    const ok = w.gzip.write(w.pending);
    w.pending = '';
    if (!ok) await Promise.race([once(w.gzip, 'drain'), failed]);
  };
  try {
    for (let c = 0; c < base.chunks; c++) {
      const stream = await store.getStream(layout.results(base.jobId, c));
      if (!stream) continue; // a lost chunk: its items are new to later runs
      for await (const record of readNdjsonGz<FetchRecord>(stream)) {
        if (failure) throw failure;
        const key = itemKey(record);
        const w = writers[partitionOf(key, partitions)]!;
        w.pending += JSON.stringify(toLine(key, entryOf(record))) + '\n';
        if (w.pending.length >= BASELINE_DEFAULTS.partitionBatchChars) await flush(w);
      }
    }
    for (const w of writers) {
      if (w.pending.length > 0) await flush(w);
      w.gzip.end();
    }
    await Promise.all(writers.map((w) => w.put));
  } catch (error) {
    for (const w of writers) w.gzip.destroy(error as Error);
    await Promise.allSettled(writers.map((w) => w.put));
    throw error;
  }
  // Written last: readers trust the partitions only once every one is complete.
  await store.put(layout.baselineIndex(base.jobId), JSON.stringify({ partitions, writtenAt: new Date().toISOString() }), { contentType: 'application/json' });
  return remember(store, base.jobId, partitions);
}

/** Baselines whose index this process has seen complete, per store: an index never changes once written. */
const indexed = new WeakMap<ObjectStore, Map<string, number>>();

function remember(store: ObjectStore, jobId: string, partitions: number): number {
  let known = indexed.get(store);
  if (!known) indexed.set(store, (known = new Map()));
  if (known.size >= 1_000) known.delete(known.keys().next().value!);
  known.set(jobId, partitions);
  return partitions;
}

function hasHeader(headers: Record<string, string> | undefined, name: string): boolean {
  return headers !== undefined && Object.keys(headers).some((k) => k.toLowerCase() === name);
}

/**
 * The item as sent with a baseline: If-None-Match / If-Modified-Since from the baseline record's
 * ETag / Last-Modified, for GET and HEAD of a URL that was ok with a body hash (headers the item or
 * the job set themselves win).
 *
 * @example
 * conditionalItem(item, options, { status: 200, sha256: 'ab..', ok: true, bytes: 5, etag: '"v1"' }).headers // { 'if-none-match': '"v1"' }
 */
export function conditionalItem(item: IndexedItem, options: JobOptions, previous: BaselineEntry | undefined): IndexedItem {
  if (!previous || !previous.ok || previous.sha256 === null || (!previous.etag && !previous.lastModified)) return item;
  const method = (item.method ?? options.method).toUpperCase();
  if (method !== 'GET' && method !== 'HEAD') return item;
  const headers: Record<string, string> = { ...item.headers };
  const set = (name: string, value: string | undefined) => {
    if (value && !hasHeader(item.headers, name) && !hasHeader(options.headers, name)) headers[name] = value;
  };
  set('if-none-match', previous.etag);
  set('if-modified-since', previous.lastModified);
  return { ...item, headers };
}

/**
 * The fetch result compared with the baseline: `change` and `previous` on the record. A 304 to a
 * conditional request (`conditional`) is recorded as the baseline's answer that it confirms:
 * `notModified: true`, `change: unchanged`, ok, the baseline's status and sha256, bytes 0 (nothing
 * was downloaded; the baseline's size counts in `bytesSaved`), the 304's headers plus the baseline's
 * ETag / Last-Modified when the 304 left them out (so the next run can ask again), and no body.
 *
 * @example
 * const compared = compareResult(await fetcher.fetch(sent, options), previous.get(itemKey(item)), sent !== item);
 */
export function compareResult(result: FetchResult, previous: BaselineEntry | undefined, conditional: boolean): FetchResult {
  const { record } = result;
  if (!previous) return { ...result, record: makeRecord({ ...record, change: 'new', previous: null }) };
  const prev: PreviousRecord = { status: previous.status, sha256: previous.sha256, ok: previous.ok, bytes: previous.bytes };
  if (conditional && record.status === 304 && record.error === null) {
    const headers = { ...record.headers };
    if (previous.etag && headers.etag === undefined) headers.etag = previous.etag;
    if (previous.lastModified && headers['last-modified'] === undefined) headers['last-modified'] = previous.lastModified;
    return {
      record: makeRecord({ ...record, ok: true, status: previous.status, sha256: previous.sha256, headers, bytes: 0, notModified: true, change: 'unchanged', previous: prev }),
      body: null,
      contentType: undefined,
    };
  }
  const same = record.status === previous.status && record.sha256 === previous.sha256;
  return { ...result, record: makeRecord({ ...record, change: same ? 'unchanged' : 'changed', previous: prev }) };
}
