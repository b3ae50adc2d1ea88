/**
 * Reading a job's records back: the result files in chunk order, decompressed, which is every
 * record in input order (invariant 2). Streamed: a job's results are never held whole. A reader
 * that cannot take everything at once (a Lambda response carries 6 MB) reads pages: each starts at a
 * cursor, a position (chunk, record in chunk), and is bounded by records, bytes and records scanned.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { QueryError } from './errors.ts';
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';
import { ERROR_CODES, type FetchRecord } from './record.ts';

const MiB = 1024 * 1024;

/** Result pages: defaults and bounds, stated once. */
export const RESULT_PAGE_DEFAULTS = {
  /** Records in one page. */
  maxRecords: 10_000,
  /**
   * Bytes of NDJSON in one page, counted as a Lambda response carries them (each `"` and `\`
   * escaped, so twice): 4 MiB stays under the 6 MB payload limit with room for headers.
   */
  maxBytes: 4 * MiB,
  /** Records read (matching or not) before a filtered page ends early, so a page never scans a whole job. */
  maxScanned: 200_000,
  /** Links to result files in one page of the links form (~1.8 KB each on S3: ~1.8 MB a page). */
  maxLinks: 1_000,
  /** A page ends at the next chunk boundary after this long (API Gateway answers within 29 s). */
  maxMillis: 10_000,
  /** Result files opened ahead of the one being read (small chunks: one GET each). */
  prefetch: 8,
} as const;

/** Every finished chunk's result file, decompressed, in chunk order (unfetched chunks are skipped). */
async function* resultStreams(store: ObjectStore, jobId: string): AsyncGenerator<Readable> {
  const job = await loadJob(store, jobId);
  for (let chunk = 0; chunk < job.chunks; chunk++) {
    const stream = await store.getStream(layout.results(jobId, chunk));
    if (stream) yield stream.pipe(createGunzip());
  }
}

/**
 * NDJSON bytes of every finished chunk, in input order.
 *
 * @example
 * for await (const bytes of readResults(store, jobId)) process.stdout.write(bytes);
 */
export async function* readResults(store: ObjectStore, jobId: string): AsyncGenerator<Buffer> {
  for await (const stream of resultStreams(store, jobId)) yield* stream as AsyncIterable<Buffer>;
}

/** The records' lines of one decompressed result file. */
async function* linesOf(stream: Readable): AsyncGenerator<string> {
  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
    if (line !== '') yield line;
  }
}

/** The records' lines, for callers that filter. */
export async function* readResultLines(store: ObjectStore, jobId: string): AsyncGenerator<string> {
  for await (const stream of resultStreams(store, jobId)) yield* linesOf(stream);
}

/** Filters on records, as GET /jobs/:id/results and `fanout results` take them. */
export interface RecordQuery {
  ok?: string;
  status?: string;
  error?: string;
  /** A comparison with the baseline: `new`, `unchanged`, `changed`, `newlyFailing` or `recovered`. */
  change?: string;
}

/** Values of the `change` filter: the record's `change`, or how its `ok` moved since the baseline. */
export const CHANGE_FILTERS = ['new', 'unchanged', 'changed', 'newlyFailing', 'recovered'] as const;

/** True when a record matches a `change` filter (records of jobs without a baseline match none). */
export function matchesChange(r: Pick<FetchRecord, 'ok' | 'change' | 'previous'>, change: string): boolean {
  if (change === 'newlyFailing') return r.previous?.ok === true && !r.ok;
  if (change === 'recovered') return r.previous?.ok === false && r.ok;
  return r.change === change;
}

/**
 * Checks filter values: `ok` is true or false, `status` a three-digit HTTP status, `error` one of
 * the error codes. A filter that can match nothing is a mistake worth saying.
 *
 * @throws {QueryError} naming the filter.
 * @example
 * checkRecordQuery({ error: 'timeout' }) // fine; { error: 'foo' } throws
 */
export function checkRecordQuery(query: RecordQuery): RecordQuery {
  if (query.ok !== undefined && query.ok !== 'true' && query.ok !== 'false') {
    throw new QueryError(`"ok" must be true or false, not ${JSON.stringify(query.ok)}`, 'ok');
  }
  if (query.status !== undefined && !/^[1-5]\d\d$/.test(query.status)) {
    throw new QueryError(`"status" must be an HTTP status (100-599), not ${JSON.stringify(query.status)}`, 'status');
  }
  if (query.error !== undefined && !(ERROR_CODES as readonly string[]).includes(query.error)) {
    throw new QueryError(`"error" must be one of ${ERROR_CODES.join(', ')}, not ${JSON.stringify(query.error)}`, 'error');
  }
  if (query.change !== undefined && !(CHANGE_FILTERS as readonly string[]).includes(query.change)) {
    throw new QueryError(`"change" must be one of ${CHANGE_FILTERS.join(', ')}, not ${JSON.stringify(query.change)}`, 'change');
  }
  return query;
}

/**
 * A predicate for the filters given, or undefined when there are none.
 *
 * @example
 * recordFilter({ ok: 'false' })?.(record) // true for a failed record
 */
export function recordFilter(query: RecordQuery): ((r: Pick<FetchRecord, 'ok' | 'status' | 'error' | 'change' | 'previous'>) => boolean) | undefined {
  if (query.ok === undefined && query.status === undefined && query.error === undefined && query.change === undefined) return undefined;
  return (r) =>
    (query.ok === undefined || String(r.ok) === query.ok) &&
    (query.status === undefined || String(r.status) === query.status) &&
    (query.error === undefined || r.error?.code === query.error) &&
    (query.change === undefined || matchesChange(r, query.change));
}

/** Where a page starts: a chunk, and a record's position within that chunk's result file. */
export interface ResultPosition {
  chunk: number;
  position: number;
}

/** What a cursor points into: the records themselves, or the links to their files. */
export type CursorKind = 'records' | 'links';

/**
 * An opaque cursor for a position (base64url of a small JSON document: clients must not build them).
 *
 * @example
 * decodeCursor(encodeCursor('records', { chunk: 3, position: 120 })) // { kind: 'records', chunk: 3, position: 120 }
 */
export function encodeCursor(kind: CursorKind, at: ResultPosition): string {
  return Buffer.from(JSON.stringify({ k: kind === 'records' ? 'r' : 'l', c: at.chunk, p: at.position })).toString('base64url');
}

/**
 * Reads a cursor back.
 *
 * @throws {QueryError} naming `cursor` when it is not one of ours.
 */
export function decodeCursor(cursor: string): ResultPosition & { kind: CursorKind } {
  const bad = () => new QueryError(`"cursor" is not a cursor this API gave: ${JSON.stringify(cursor.slice(0, 80))}`, 'cursor');
  if (cursor.length > 200 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const v = value as { k?: unknown; c?: unknown; p?: unknown };
  if (
    value === null ||
    typeof value !== 'object' ||
    (v.k !== 'r' && v.k !== 'l') ||
    !Number.isSafeInteger(v.c) ||
    !Number.isSafeInteger(v.p) ||
    (v.c as number) < 0 ||
    (v.p as number) < 0
  ) {
    throw bad();
  }
  return { kind: v.k === 'r' ? 'records' : 'links', chunk: v.c as number, position: v.p as number };
}

/**
 * Size of a line as a Lambda response carries it in its JSON payload: its UTF-8 bytes, with `"`
 * and `\` counted twice (they are escaped). Records hold no raw control characters.
 */
export function escapedBytes(line: string): number {
  let extra = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 34 || c === 92) extra++;
    else if (c < 32) extra += 5;
  }
  return Buffer.byteLength(line, 'utf8') + extra;
}

export interface PageLimits {
  maxRecords: number;
  maxBytes: number;
  maxScanned?: number;
  maxMillis?: number;
}

export interface ResultPage {
  /** NDJSON lines (without their newline), in input order. */
  lines: string[];
  /** The page's size as counted against `maxBytes` (newlines included). */
  bytes: number;
  /** Where the next page starts, or null when this is the last. */
  next: ResultPosition | null;
}

/**
 * One page of records from `from` on, in input order. A page holds at least one record when any
 * remains (a record larger than `maxBytes` fills a page alone), at most `maxRecords`, and stops
 * before `maxBytes`; with a filter it may hold fewer, even none, when `maxScanned` records were
 * read: follow `next` until it is null. Chunks not yet fetched are skipped (a running job).
 *
 * @example
 * let at = { chunk: 0, position: 0 };
 * for (let page; at; at = page.next) page = await readResultPage(store, jobId, at, { maxRecords: 1000, maxBytes: 1 << 20 });
 */
export async function readResultPage(
  store: ObjectStore,
  jobId: string,
  from: ResultPosition,
  limits: PageLimits,
  filter?: (record: FetchRecord) => boolean,
): Promise<ResultPage> {
  const job = await loadJob(store, jobId);
  const maxScanned = limits.maxScanned ?? RESULT_PAGE_DEFAULTS.maxScanned;
  const stopAt = Date.now() + (limits.maxMillis ?? RESULT_PAGE_DEFAULTS.maxMillis);
  const lines: string[] = [];
  let bytes = 0;
  let scanned = 0;
  // Result files are opened a few ahead: a job of small chunks costs one GET per chunk.
  const ahead = new Map<number, Promise<Readable | null>>();
  const openAhead = (from: number) => {
    for (let c = from; c < Math.min(job.chunks, from + RESULT_PAGE_DEFAULTS.prefetch); c++) {
      if (!ahead.has(c)) ahead.set(c, store.getStream(layout.results(jobId, c)));
    }
  };
  try {
    for (let chunk = from.chunk, skip = from.position; chunk < job.chunks; chunk++, skip = 0) {
      if (chunk > from.chunk && Date.now() >= stopAt) return { lines, bytes, next: { chunk, position: 0 } };
      openAhead(chunk);
      const raw = await ahead.get(chunk)!;
      ahead.delete(chunk);
      if (!raw) continue;
      const stream = raw.pipe(createGunzip());
      try {
        let position = 0;
        for await (const line of linesOf(stream)) {
          const at = position++;
          if (at < skip) continue;
          if (scanned >= maxScanned || lines.length >= limits.maxRecords) return { lines, bytes, next: { chunk, position: at } };
          scanned++;
          if (filter && !filter(JSON.parse(line) as FetchRecord)) continue;
          const size = escapedBytes(line) + 1;
          if (lines.length > 0 && bytes + size > limits.maxBytes) return { lines, bytes, next: { chunk, position: at } };
          lines.push(line);
          bytes += size;
        }
      } finally {
        raw.destroy();
        stream.destroy();
      }
    }
    return { lines, bytes, next: null };
  } finally {
    for (const pending of ahead.values()) pending.then((s) => s?.destroy(), () => {});
  }
}
