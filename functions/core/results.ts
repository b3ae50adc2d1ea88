/**
 * Reading a job's records back: the result files in chunk order, decompressed, which is every
 * record in input order (invariant 2). Streamed: a job's results are never held whole.
 */
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';

/**
 * NDJSON bytes of every finished chunk, in input order.
 *
 * @example
 * for await (const bytes of readResults(store, jobId)) process.stdout.write(bytes);
 */
export async function* readResults(store: ObjectStore, jobId: string): AsyncGenerator<Buffer> {
  const job = await loadJob(store, jobId);
  for (let chunk = 0; chunk < job.chunks; chunk++) {
    const stream = await store.getStream(layout.results(jobId, chunk));
    if (!stream) continue; // not fetched yet
    yield* stream.pipe(createGunzip()) as AsyncIterable<Buffer>;
  }
}

/** The records' lines, for callers that filter. */
export async function* readResultLines(store: ObjectStore, jobId: string): AsyncGenerator<string> {
  const job = await loadJob(store, jobId);
  for (let chunk = 0; chunk < job.chunks; chunk++) {
    const stream = await store.getStream(layout.results(jobId, chunk));
    if (!stream) continue;
    for await (const line of createInterface({ input: stream.pipe(createGunzip()), crlfDelay: Infinity })) {
      if (line !== '') yield line;
    }
  }
}
