/**
 * Planning: turns a validated input stream into a job. Chunks of `chunkSize` items go to the store
 * as they are read (so memory does not grow with the input), then job.json, then one small message
 * per chunk. If any line is bad, everything written so far is removed: invalid input creates nothing.
 */
import { v7 as uuidv7 } from 'uuid';
import type { IndexedItem, OpenedInput } from './input.ts';
import { chunkMessage, type JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { markDuplicates } from './dedupe.ts';
import { gzipNdjson } from './ndjson.ts';
import { parseJobOptions } from './options.ts';
import type { ObjectStore, Queue } from './ports.ts';

/** Chunk inputs written at once while planning. */
const PLAN_WRITE_CONCURRENCY = 8;
/** Messages handed to the queue per send call (the queue batches further as its backend requires). */
const SEND_BATCH = 100;

export interface PlanRequest {
  input: OpenedInput;
  /** Options given beside the list (CLI flags, query parameters); they override a JSON document's own. */
  options?: Record<string, unknown>;
  source?: string;
  /** Sends the chunk messages; false leaves that to the caller (the API may want to answer first). */
  enqueue?: boolean;
}

/**
 * Validates options, writes the job's chunk inputs and job.json, and enqueues its chunks.
 *
 * @throws {InputError | OptionsError} before anything is left in the store.
 * @example
 * const job = await planJob(store, queue, { input: await openInput(fs.createReadStream('urls.txt')) });
 */
export async function planJob(store: ObjectStore, queue: Queue, request: PlanRequest): Promise<JobMeta> {
  const options = parseJobOptions({ ...request.input.options, ...request.options });
  const jobId = uuidv7();
  let total = 0;
  let chunks = 0;
  const writes = new Set<Promise<unknown>>();

  const flush = async (items: IndexedItem[]) => {
    const write = store.put(layout.input(jobId, chunks++), gzipNdjson(items));
    writes.add(write);
    write.finally(() => writes.delete(write)).catch(() => {});
    if (writes.size >= PLAN_WRITE_CONCURRENCY) await Promise.race(writes);
  };

  try {
    let batch: IndexedItem[] = [];
    for await (const item of options.dedupe ? markDuplicates(request.input.items) : request.input.items) {
      batch.push(item);
      total++;
      if (batch.length === options.chunkSize) {
        await flush(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await flush(batch);
    await Promise.all(writes);
  } catch (error) {
    await Promise.allSettled(writes);
    await store.deletePrefix(layout.jobPrefix(jobId));
    throw error;
  }

  const job: JobMeta = { jobId, createdAt: new Date().toISOString(), options, total, chunks, source: request.source };
  await store.put(layout.job(jobId), JSON.stringify(job, null, 2), { ifAbsent: true, contentType: 'application/json' });
  if (request.enqueue !== false) await enqueueChunks(queue, job);
  return job;
}

/** Sends a message for each of `chunkNumbers` (default: every chunk of the job). */
export async function enqueueChunks(queue: Queue, job: JobMeta, chunkNumbers?: number[]): Promise<void> {
  const numbers = chunkNumbers ?? Array.from({ length: job.chunks }, (_, i) => i);
  for (let i = 0; i < numbers.length; i += SEND_BATCH) {
    await queue.send(numbers.slice(i, i + SEND_BATCH).map((chunk) => chunkMessage(job.jobId, chunk)));
  }
}
