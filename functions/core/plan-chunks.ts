/**
 * The chunk-writing half of planning, shared by the planner of a whole list (plan.ts) and the
 * planner of a list in slices (plan-slices.ts): items are batched into chunks of `chunkSize`, each
 * chunk's input written to the store as it fills (a few at once), and the job committed at the end
 * (job.json, then one message per chunk).
 */
import type { IndexedItem } from './input.ts';
import { chunkMessage, type JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { gzipNdjson } from './ndjson.ts';
import type { ObjectStore, Queue } from './ports.ts';

/** Planning defaults, stated once. */
export const PLAN_DEFAULTS = {
  /** Chunk inputs written at once while planning. */
  writeConcurrency: 8,
  /** Messages handed to the queue per send call (the queue batches further as its backend requires). */
  sendBatch: 100,
} as const;

/**
 * Batches items into chunk inputs.
 *
 * @example
 * const writer = new ChunkInputWriter(store, jobId, 500);
 * for await (const item of items) if (writer.add(item)) await writer.flush();
 * const chunks = await writer.finish();
 */
export class ChunkInputWriter {
  private batch: IndexedItem[] = [];
  private readonly writes = new Set<Promise<unknown>>();
  private failure: unknown;

  /** @param chunk the next chunk number (a slice resumes where the previous one stopped). */
  constructor(
    private readonly store: ObjectStore,
    private readonly jobId: string,
    private readonly chunkSize: number,
    public chunk = 0,
  ) {}

  /**
   * Adds an item; true when it completed a chunk: then `await writer.flush()` (it starts the chunk's
   * write and waits while too many are under way). Synchronous, so a line costs no promise.
   */
  add(item: IndexedItem): boolean {
    this.batch.push(item);
    return this.batch.length >= this.chunkSize;
  }

  /** Starts writing the items added so far as the next chunk. */
  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    const items = this.batch;
    this.batch = [];
    const write = this.store.put(layout.input(this.jobId, this.chunk++), gzipNdjson(items));
    this.writes.add(write);
    write.then(
      () => this.writes.delete(write),
      (error) => {
        this.writes.delete(write);
        this.failure ??= error;
      },
    );
    if (this.writes.size >= PLAN_DEFAULTS.writeConcurrency) await Promise.race(this.writes).catch(() => {});
    if (this.failure) throw this.failure;
  }

  /** Waits until every chunk completed so far is in the store. */
  async drain(): Promise<void> {
    await Promise.allSettled(this.writes);
    if (this.failure) throw this.failure;
  }

  /** Writes the last partial chunk and waits for every write; returns the number of chunks. */
  async finish(): Promise<number> {
    if (this.batch.length > 0) await this.flush();
    await this.drain();
    return this.chunk;
  }

  /** Waits for writes in flight without failing (before the caller removes what was written). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.writes);
  }
}

/**
 * Writes job.json (if absent) and, unless told not to, enqueues every chunk.
 *
 * @example
 * await commitJob(store, queue, { jobId, createdAt, options, total, chunks: await writer.finish() });
 */
export async function commitJob(store: ObjectStore, queue: Pick<Queue, 'send'>, job: JobMeta, enqueue = true): Promise<void> {
  await store.put(layout.job(job.jobId), JSON.stringify(job, null, 2), { ifAbsent: true, contentType: 'application/json' });
  if (enqueue) await enqueueChunks(queue, job);
}

/**
 * Sends a message for each of `chunkNumbers` (default: every chunk of the job), a batch at a time;
 * with a `deadline`, stops between batches once it passed (at least one batch is sent).
 *
 * @returns how many of the messages were sent (all of them unless the deadline stopped it).
 * @example
 * await enqueueChunks(queue, job, [3, 7]); // re-enqueue two chunks after a restart
 */
export async function enqueueChunks(queue: Pick<Queue, 'send'>, job: JobMeta, chunkNumbers?: number[], deadline = Infinity): Promise<number> {
  const numbers = chunkNumbers ?? Array.from({ length: job.chunks }, (_, i) => i);
  for (let i = 0; i < numbers.length; i += PLAN_DEFAULTS.sendBatch) {
    if (i > 0 && Date.now() >= deadline) return i;
    await queue.send(numbers.slice(i, i + PLAN_DEFAULTS.sendBatch).map((chunk) => chunkMessage(job.jobId, chunk)));
  }
  return numbers.length;
}
