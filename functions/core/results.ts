/**
 * Reading a job's records back: the result files in chunk order, decompressed, which is every
 * record in input order (invariant 2). Streamed: a job's results are never held whole.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';
import type { FetchRecord } from './record.ts';

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

/** The records' lines, for callers that filter. */
export async function* readResultLines(store: ObjectStore, jobId: string): AsyncGenerator<string> {
  for await (const stream of resultStreams(store, jobId)) {
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
      if (line !== '') yield line;
    }
  }
}

/** Filters on records, as GET /jobs/:id/results and `fanout results` take them. */
export interface RecordQuery {
  ok?: string;
  status?: string;
  error?: string;
}

/**
 * A predicate for the filters given, or undefined when there are none.
 *
 * @example
 * recordFilter({ ok: 'false' })?.(record) // true for a failed record
 */
export function recordFilter(query: RecordQuery): ((r: Pick<FetchRecord, 'ok' | 'status' | 'error'>) => boolean) | undefined {
  if (query.ok === undefined && query.status === undefined && query.error === undefined) return undefined;
  return (r) =>
    (query.ok === undefined || String(r.ok) === query.ok) &&
    (query.status === undefined || String(r.status) === query.status) &&
    (query.error === undefined || r.error?.code === query.error);
}
