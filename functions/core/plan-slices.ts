/**
 * Planning a list too large for one request or one invocation (a ten-million-line upload on AWS),
 * in slices: a `plan` message says where in the uploaded list to resume (byte offset, line, index,
 * chunk); each slice validates lines and writes chunk inputs until its time runs short, then hands
 * on. Chunk messages are sent only once the whole list is valid, so invalid input still creates no
 * job: a bad line removes the chunk inputs written so far and leaves a `rejected.json` naming it.
 */
import { z } from 'zod';
import { CONTINUATION_DEFAULTS } from './continuation.ts';
import { deleteDedupeState, loadDedupeState, markDuplicate, saveDedupeState } from './dedupe.ts';
import { EmptyInputError, FanoutError, InputError, NotFoundError } from './errors.ts';
import { boundedLines, indentOf, openInput, parseItemLine, type IndexedItem, type InputFormat } from './input.ts';
import type { JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { parseJobOptions, type JobOptions } from './options.ts';
import { ChunkInputWriter, commitJob, enqueueChunks } from './plan-chunks.ts';
import { checkBaseline } from './baseline.ts';
import { planJob, scheduleFields, type PlanRequest } from './plan.ts';
import { v7 as uuidv7 } from 'uuid';
import type { ObjectStore, Queue } from './ports.ts';

export const planMessageSchema = z.object({
  type: z.literal('plan'),
  jobId: z.string(),
  /** Byte offset in the uploaded list where the next line starts. */
  offset: z.number().int().min(0).default(0),
  /** Lines before `offset` (so errors name the right line). */
  line: z.number().int().min(0).default(0),
  /** Items before `offset`. */
  index: z.number().int().min(0).default(0),
  /** Chunk inputs written so far. */
  chunk: z.number().int().min(0).default(0),
  /** Format decided on the first slice. */
  format: z.enum(['auto', 'text', 'ndjson']).default('auto'),
  /** Chunk messages already sent once the job is planned (the API hands on the rest when its time runs short). */
  enqueued: z.number().int().min(0).default(0),
});
export type PlanMessage = z.infer<typeof planMessageSchema>;

/** What a job being planned keeps while it has no job.json yet. */
export interface PlanningMeta {
  jobId: string;
  createdAt: string;
  options: JobOptions;
  source: string;
  /** Store key of the list (an upload, or a schedule's list). */
  list: string;
  /** The schedule that started the job. */
  schedule?: PlanRequest['schedule'];
  /** The list is an upload: deleted once the job is planned or the list refused. */
  consume?: boolean;
}

export interface Rejection {
  line?: number;
  field?: string;
  message: string;
}

/** Starts planning a job from a stored list: writes planning.json and sends the first plan message. */
export async function startPlanning(store: ObjectStore, queue: Queue, meta: PlanningMeta, format: 'auto' | 'text' | 'ndjson'): Promise<void> {
  await store.put(layout.planning(meta.jobId), JSON.stringify(meta), { ifAbsent: true, contentType: 'application/json' });
  await queue.send([JSON.stringify({ type: 'plan', jobId: meta.jobId, format } satisfies Partial<PlanMessage>)]);
}

export interface ListSubmission {
  /** Store key of the list. */
  list: string;
  format: InputFormat;
  /** CSV: the URL column. */
  urlColumn?: string;
  options: Record<string, unknown>;
  source: string;
  schedule?: PlanRequest['schedule'];
  /** Lists larger than this are planned in slices by the workers; unset: always at once. */
  planInSlicesAboveBytes?: number;
  /** The list is an upload: the workers delete it once they have planned (or refused) it. */
  consume?: boolean;
  /** See PlanRequest.checkOptions. */
  checkOptions?: PlanRequest['checkOptions'];
}

export interface Submitted {
  jobId: string;
  /** null while the list is planned in slices. */
  total: number | null;
  chunks: number | null;
  state: 'queued' | 'planning';
  /** job.json's createdAt (the run's key in a schedule's run index). */
  createdAt: string;
}

/**
 * Submits a list already in the store (an upload, a schedule's list): planned at once when small,
 * in slices by the workers when large.
 *
 * @throws {NotFoundError} when the list is missing; InputError or OptionsError when planned at once.
 */
export async function submitStoredList(store: ObjectStore, queue: Queue, submission: ListSubmission): Promise<Submitted> {
  const size = await store.size(submission.list);
  if (size === null) throw new NotFoundError(`no list at ${submission.list}`);
  if (submission.planInSlicesAboveBytes !== undefined && size > submission.planInSlicesAboveBytes) {
    if (submission.format === 'json' || submission.format === 'csv') {
      throw new InputError(`a list this large must be text or NDJSON, not ${submission.format === 'csv' ? 'CSV' : 'a JSON document'}`, undefined, 'format');
    }
    const options = parseJobOptions(submission.options);
    submission.checkOptions?.(options);
    await checkBaseline(store, options.since);
    const jobId = uuidv7();
    const meta: PlanningMeta = {
      jobId,
      createdAt: new Date().toISOString(),
      options,
      source: submission.source,
      list: submission.list,
      schedule: submission.schedule,
      ...(submission.consume ? { consume: true } : {}),
    };
    await startPlanning(store, queue, meta, submission.format);
    return { jobId, total: null, chunks: null, state: 'planning', createdAt: meta.createdAt };
  }
  const input = await openInput((await store.getStream(submission.list))!, submission.format, { urlColumn: submission.urlColumn });
  const job = await planJob(store, queue, { input, options: submission.options, source: submission.source, schedule: submission.schedule, checkOptions: submission.checkOptions });
  return { jobId: job.jobId, total: job.total, chunks: job.chunks, state: 'queued', createdAt: job.createdAt };
}

export type SliceOutcome = { kind: 'continued'; message: string } | { kind: 'planned'; job: JobMeta } | { kind: 'rejected'; rejection: Rejection };

export interface SliceOptions {
  /** Epoch ms by which the slice must hand on (none: plan to the end). */
  deadline?: number;
  /** Time kept before the deadline for handing on. */
  marginMs?: number;
  /** False: job.json is written but no chunk message sent (the caller sends them, e.g. within its own time). */
  enqueue?: boolean;
  /** 'throw': invalid input is thrown, not recorded as rejected.json (the API answers it as a 400 itself). */
  invalid?: 'reject' | 'throw';
}

/**
 * Plans one slice. Idempotent: a redelivered slice rewrites the same chunk inputs.
 *
 * @example
 * const outcome = await planSlice(store, queue, body, { deadline: Date.now() + 60_000 });
 * if (outcome.kind === 'continued') await queue.send([outcome.message]);
 */
export async function planSlice(
  store: ObjectStore,
  queue: Pick<Queue, 'send'>,
  body: string,
  { deadline, marginMs = CONTINUATION_DEFAULTS.marginMs, enqueue = true, invalid = 'reject' }: SliceOptions = {},
): Promise<SliceOutcome> {
  const message = planMessageSchema.parse(JSON.parse(body));
  const { jobId } = message;
  const metaData = await store.get(layout.planning(jobId));
  if (!metaData) throw new Error(`no planning record for job ${jobId}`);
  const meta = JSON.parse(metaData.toString('utf8')) as PlanningMeta;
  const existing = await store.get(layout.job(jobId));
  if (existing) {
    // Planned already; the chunk messages may not all have been sent: send them (duplicates are harmless),
    // after the first `enqueued`, which the API sent itself before handing on.
    const job = JSON.parse(existing.toString('utf8')) as JobMeta;
    const from = Math.min(message.enqueued, job.chunks);
    await enqueueChunks(queue, job, Array.from({ length: job.chunks - from }, (_, i) => from + i));
    if (meta.consume) await store.delete(meta.list);
    return { kind: 'planned', job };
  }
  const stream = await store.getStream(meta.list, { start: message.offset });
  if (!stream) {
    const rejected = await store.get(layout.rejected(jobId)); // a redelivered slice of a refused upload
    if (rejected) return { kind: 'rejected', rejection: JSON.parse(rejected.toString('utf8')) as Rejection };
    throw new Error(`list ${meta.list} vanished`);
  }

  let { line, index, format } = message;
  const writer = new ChunkInputWriter(store, jobId, meta.options.chunkSize, message.chunk);
  // The `dedupe` option: the set of URLs seen is handed from slice to slice.
  const seen = meta.options.dedupe ? await loadDedupeState(store, jobId, message.offset) : undefined;
  const stopAt = deadline === undefined ? Infinity : deadline - marginMs;
  let chunks = 0;

  try {
    for await (const next of boundedLines(stream, { offset: message.offset, line })) {
      const { text, end } = next;
      line = next.line;
      const unmarked = text.replace(/^\uFEFF/, '');
      const trimmed = unmarked.trim();
      if (trimmed === '' || trimmed.startsWith('#')) continue;
      if (format === 'auto') {
        if (trimmed.startsWith('[') || (trimmed.startsWith('{') && !trimmed.includes('"url"'))) {
          throw new InputError('a list planned in slices must be text or NDJSON, not a JSON document', line);
        }
        format = trimmed.startsWith('{') ? 'ndjson' : 'text';
      }
      const item: IndexedItem = { ...parseItemLine(trimmed, format, line, indentOf(unmarked)), index: index++ };
      if (!writer.add(seen ? markDuplicate(seen, item) : item)) continue;
      await writer.flush();
      if (Date.now() >= stopAt) {
        stream.destroy();
        // The next slice starts after these chunks: they must be in the store first.
        await writer.drain();
        if (seen) await saveDedupeState(store, jobId, end, seen);
        const handOn: PlanMessage = { type: 'plan', jobId, offset: end, line, index, chunk: writer.chunk, format, enqueued: 0 };
        return { kind: 'continued', message: JSON.stringify(handOn) };
      }
    }
    chunks = await writer.finish();
    if (index === 0) throw new EmptyInputError();
  } catch (error) {
    await writer.abandon();
    if (!(error instanceof FanoutError) || error.status >= 500 || invalid === 'throw') throw error;
    const rejection: Rejection = { message: error.message, ...(error instanceof InputError && error.line !== undefined ? { line: error.line } : {}) };
    await store.deletePrefix(`${layout.jobPrefix(jobId)}input/`);
    if (seen) await deleteDedupeState(store, jobId);
    await store.put(layout.rejected(jobId), JSON.stringify(rejection), { ifAbsent: true, contentType: 'application/json' });
    if (meta.consume) await store.delete(meta.list);
    return { kind: 'rejected', rejection };
  }

  const job: JobMeta = { jobId, createdAt: meta.createdAt, options: meta.options, total: index, chunks, source: meta.source, ...scheduleFields(meta.schedule) };
  await commitJob(store, queue, job, enqueue);
  // Only once the job is committed: a redelivered slice before that needs its set.
  if (seen) await deleteDedupeState(store, jobId);
  if (meta.consume) await store.delete(meta.list);
  return { kind: 'planned', job };
}
