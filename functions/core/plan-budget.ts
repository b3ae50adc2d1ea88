/**
 * Planning within a time budget, for a runtime whose calls are cut off (API Gateway answers within
 * 29 s): the list is stored, planned in this call by the sliced planner until the budget is spent,
 * and what remains (lines, or chunk messages not yet sent) is handed to the workers as `plan`
 * messages. A small list is planned and queued in the call as before; a list of many small chunks
 * (20,000 chunks took 42 s in one call) answers `planning` instead of timing out.
 */
import { v7 as uuidv7 } from 'uuid';
import { NotFoundError } from './errors.ts';
import { openInput, type OpenedInput } from './input.ts';
import { layout } from './layout.ts';
import { parseJobOptions } from './options.ts';
import { enqueueChunks } from './plan-chunks.ts';
import { planSlice, submitStoredList, type ListSubmission, type PlanMessage, type PlanningMeta, type Submitted } from './plan-slices.ts';
import type { PlanRequest } from './plan.ts';
import type { ObjectStore, Queue } from './ports.ts';

export interface BudgetedPlan {
  /** Store key of the list; unset with `body`, which is stored first at `jobs/JOB/list`. */
  list?: string;
  body?: Buffer | string;
  format: 'auto' | 'text' | 'ndjson';
  options: Record<string, unknown>;
  source: string;
  /** The schedule that started the job, if one did. */
  schedule?: PlanningMeta['schedule'];
  /** The list is an upload, deleted by whoever finishes planning it. */
  consume?: boolean;
  /** Epoch ms by which the call must have handed on what it could not do. */
  deadline: number;
  /** See PlanRequest.checkOptions. */
  checkOptions?: PlanRequest['checkOptions'];
}

/**
 * Plans a list until `deadline`, then hands the rest on to the workers.
 *
 * @returns `queued` with its totals when planned in the call; `planning` when the workers go on (the
 *   status then says `planning` until they are done, or `rejected` naming a bad line found later).
 * @throws {InputError | OptionsError} for options, or a bad line found within the budget: nothing is
 *   left in the store then (a stored body is removed too).
 * @example
 * const submitted = await planWithinBudget(store, queue, { body, format: 'text', options: {}, source: 'api', deadline: Date.now() + 20_000 });
 */
export async function planWithinBudget(store: ObjectStore, queue: Pick<Queue, 'send'>, plan: BudgetedPlan): Promise<Submitted> {
  const options = parseJobOptions(plan.options);
  plan.checkOptions?.(options);
  const jobId = uuidv7();
  const list = plan.list ?? layout.list(jobId);
  const meta: PlanningMeta = { jobId, createdAt: new Date().toISOString(), options, source: plan.source, list, ...(plan.schedule ? { schedule: plan.schedule } : {}), ...(plan.consume ? { consume: true } : {}) };
  const first = { type: 'plan', jobId, format: plan.format } satisfies Partial<PlanMessage>;
  let outcome: Awaited<ReturnType<typeof planSlice>>;
  try {
    if (plan.body !== undefined) await store.put(list, plan.body, { contentType: 'text/plain' });
    await store.put(layout.planning(jobId), JSON.stringify(meta), { ifAbsent: true, contentType: 'application/json' });
    outcome = await planSlice(store, queue, JSON.stringify(first), { deadline: plan.deadline, marginMs: 0, enqueue: false, invalid: 'throw' });
  } catch (error) {
    await store.deletePrefix(layout.jobPrefix(jobId)); // the stored body with the rest
    throw error;
  }
  if (outcome.kind === 'continued') {
    await queue.send([outcome.message]);
    return { jobId, total: null, chunks: null, state: 'planning', createdAt: meta.createdAt };
  }
  if (outcome.kind === 'rejected') throw new Error('unreachable: invalid input is thrown'); // invalid: 'throw'
  const { job } = outcome;
  const enqueued = await enqueueChunks(queue, job, undefined, plan.deadline);
  if (enqueued < job.chunks) await queue.send([JSON.stringify({ ...first, enqueued } satisfies Partial<PlanMessage>)]);
  return { jobId, total: job.total, chunks: job.chunks, state: 'queued', createdAt: job.createdAt };
}

/**
 * A parsed JSON document's items as an NDJSON list (one item a line, as validated), so the sliced
 * planner, which reads lines, can plan it and resume at a byte offset.
 *
 * @example
 * const body = await ndjsonOfItems(await openInput(Readable.from([text]), 'json'));
 */
export async function ndjsonOfItems(input: OpenedInput): Promise<string> {
  const lines: string[] = [];
  for await (const { index: _index, ...item } of input.items) lines.push(JSON.stringify(item));
  return lines.join('\n') + '\n';
}

/**
 * Submits a list already in the store (an upload) within a time budget: a list above
 * `planInSlicesAboveBytes` goes to the workers whole (as {@link submitStoredList} does); a smaller
 * one is planned by {@link planWithinBudget} (a JSON document is parsed first, its items planned as
 * NDJSON).
 *
 * @throws {NotFoundError} when the list is missing; InputError or OptionsError as planWithinBudget.
 * @example
 * await submitStoredListWithinBudget(store, queue, { list, format: 'auto', options: {}, source, deadline: Date.now() + 20_000 });
 */
export async function submitStoredListWithinBudget(
  store: ObjectStore,
  queue: Queue,
  submission: ListSubmission & { deadline: number },
): Promise<Submitted> {
  const size = await store.size(submission.list);
  if (size === null) throw new NotFoundError(`no list at ${submission.list}`);
  if (submission.planInSlicesAboveBytes !== undefined && size > submission.planInSlicesAboveBytes) return submitStoredList(store, queue, submission);
  const { list, source, deadline, schedule, consume, checkOptions } = submission;
  if (submission.format === 'text' || submission.format === 'ndjson') {
    return planWithinBudget(store, queue, { list, format: submission.format, options: submission.options, source, schedule, consume, deadline, checkOptions });
  }
  const stream = await store.getStream(list);
  if (!stream) throw new NotFoundError(`no list at ${list}`);
  let parsed: { body: string; options?: Record<string, unknown> } | undefined;
  let format: 'text' | 'ndjson' | undefined;
  try {
    const input = await openInput(stream, submission.format, { urlColumn: submission.urlColumn });
    if (input.format === 'text' || input.format === 'ndjson') format = input.format;
    else parsed = { body: await ndjsonOfItems(input), options: input.options }; // a JSON document (or any format not read by lines)
  } finally {
    stream.destroy(); // a text or NDJSON list is read again by the planner, from its first byte
  }
  if (format) return planWithinBudget(store, queue, { list, format, options: submission.options, source, schedule, consume, deadline, checkOptions });
  return planWithinBudget(store, queue, { body: parsed!.body, format: 'ndjson', options: { ...parsed!.options, ...submission.options }, source, schedule, deadline, checkOptions });
}
