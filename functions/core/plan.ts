/**
 * Planning: turns a validated input stream into a job. Chunks of `chunkSize` items go to the store
 * as they are read (so memory does not grow with the input), then job.json, then one small message
 * per chunk. If any line is bad, everything written so far is removed: invalid input creates nothing.
 */
import { v7 as uuidv7 } from 'uuid';
import type { OpenedInput } from './input.ts';
import { checkBaseline } from './baseline.ts';
import type { AlertOn, JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { markDuplicates } from './dedupe.ts';
import { parseJobOptions, type JobOptions } from './options.ts';
import { ChunkInputWriter, commitJob, enqueueChunks } from './plan-chunks.ts';
import type { ObjectStore, Queue } from './ports.ts';

export { enqueueChunks };

export interface PlanRequest {
  input: OpenedInput;
  /** Options given beside the list (CLI flags, query parameters); they override a JSON document's own. */
  options?: Record<string, unknown>;
  source?: string;
  /** The schedule that started the job, and its `alertOn`. */
  schedule?: { name: string; alertOn?: AlertOn[] };
  /** Sends the chunk messages; false leaves that to the caller (the API may want to answer first). */
  enqueue?: boolean;
  /**
   * The runtime's own checks of the final options (a JSON document's merged with those beside it):
   * the API's `checkOptions`, so a list's embedded options are held to them too. Throws to refuse.
   */
  checkOptions?: (options: JobOptions) => void;
}

/**
 * Validates options, writes the job's chunk inputs and job.json, and enqueues its chunks.
 *
 * @throws {InputError | OptionsError} before anything is left in the store.
 * @example
 * const job = await planJob(store, queue, { input: await openInput(fs.createReadStream('urls.txt')) });
 */
export async function planJob(store: ObjectStore, queue: Pick<Queue, 'send'>, request: PlanRequest): Promise<JobMeta> {
  const options = parseJobOptions({ ...request.input.options, ...request.options });
  request.checkOptions?.(options);
  await checkBaseline(store, options.since);
  const jobId = uuidv7();
  const writer = new ChunkInputWriter(store, jobId, options.chunkSize);
  let total = 0;
  let chunks: number;
  try {
    for await (const item of options.dedupe ? markDuplicates(request.input.items) : request.input.items) {
      total++;
      if (writer.add(item)) await writer.flush();
    }
    chunks = await writer.finish();
  } catch (error) {
    await writer.abandon();
    await store.deletePrefix(layout.jobPrefix(jobId));
    throw error;
  }
  const job: JobMeta = { jobId, createdAt: new Date().toISOString(), options, total, chunks, source: request.source, ...scheduleFields(request.schedule) };
  await commitJob(store, queue, job, request.enqueue !== false);
  return job;
}

/** The job.json fields of a scheduled run (none for other jobs). */
export function scheduleFields(schedule: PlanRequest['schedule']): Pick<JobMeta, 'schedule' | 'alertOn'> {
  if (!schedule) return {};
  return { schedule: schedule.name, ...(schedule.alertOn?.length ? { alertOn: schedule.alertOn } : {}) };
}
