/**
 * A job as stored in job.json, and the messages that carry its chunks through the queue.
 */
import { z } from 'zod';
import { NotFoundError } from './errors.ts';
import { layout } from './layout.ts';
import type { JobOptions } from './options.ts';
import type { ObjectStore } from './ports.ts';

export interface JobMeta {
  jobId: string;
  createdAt: string;
  options: JobOptions;
  total: number;
  chunks: number;
  /** Where the list came from (a file name, "api", a schedule name), for people reading job lists. */
  source?: string;
  /** The schedule that started the job (contract name `schedule`). */
  schedule?: string;
  /** The schedule's `alertOn`: the callback and event are sent only when such records exist. */
  alertOn?: AlertOn[];
}

/** Change counts a schedule may alert on. */
export const ALERT_ON = ['new', 'changed', 'newlyFailing', 'recovered'] as const;
export type AlertOn = (typeof ALERT_ON)[number];

/** A queue message: one chunk of one job. Small on purpose: the items are in the store. */
export const chunkMessageSchema = z.object({
  type: z.literal('chunk'),
  jobId: z.string(),
  chunk: z.number().int().min(0),
  /** How many times a delivery ran out of time and handed the rest of the chunk on. */
  continuation: z.number().int().min(0).default(0),
});
export type ChunkMessage = z.infer<typeof chunkMessageSchema>;

export function chunkMessage(jobId: string, chunk: number, continuation = 0): string {
  return JSON.stringify(continuation > 0 ? { type: 'chunk', jobId, chunk, continuation } : { type: 'chunk', jobId, chunk });
}

/** Job metadata never changes once written, so a process may cache it. */
const cache = new Map<string, JobMeta>();
const CACHE_LIMIT = 1_000;

/**
 * Reads job.json.
 *
 * @throws {NotFoundError} when the job does not exist.
 */
export async function loadJob(store: ObjectStore, jobId: string): Promise<JobMeta> {
  const cached = cache.get(jobId);
  if (cached) return cached;
  const data = await store.get(layout.job(jobId));
  if (!data) throw new NotFoundError(`no job ${jobId}`);
  const job = JSON.parse(data.toString('utf8')) as JobMeta;
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(jobId, job);
  return job;
}

/**
 * A job an API user submitted (`source` written by the API: `api` for a request body, `upload:ID`
 * for an upload): its options are theirs, so whoever runs it keeps the server's rules.
 */
export function isApiSource(source: string | undefined): boolean {
  return source === 'api' || source?.startsWith('upload:') === true;
}
