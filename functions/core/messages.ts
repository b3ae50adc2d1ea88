/**
 * The one message handler: every queue message of every runtime goes through {@link handleMessage},
 * so the chunk, plan, finalize and callback paths, and their dead letters, are written once. The
 * embedded runtime (worker loop, worker threads, the in-process queue's dead-letter hook) and the
 * Lambda worker are thin adapters that receive, call this, and acknowledge.
 *
 * Message types (JSON bodies):
 * - `chunk` {jobId, chunk, continuation?}: fetch a chunk (core/worker.ts);
 * - `plan` {jobId, offset, line, index, chunk, format}: plan one slice of a large list (core/plan-slices.ts);
 * - `finalize` {jobId}: write the manifest from the ledger if every chunk is counted (core/finish.ts);
 * - `callback` {jobId}: deliver the completion callback from its outbox entry (core/callback.ts).
 *
 * Every failure ends somewhere: a dead-lettered chunk gets `chunk_failed` records; if even those
 * cannot be written on the dead letter's last try, the chunk is counted as failed in the ledger and
 * marked lost, so the job still ends; a dead letter's last try never throws, so it cannot loop.
 */
import { z } from 'zod';
import { callbackMessage, callbackMessageSchema, deliverCallback, readCallbackOutbox, type CallbackDelivery, type CallbackDeps } from './callback.ts';
import { finishJob } from './finish.ts';
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import { chunkItemCount, ledgerFor, lostChunkCounts } from './ledger.ts';
import { planSlice } from './plan-slices.ts';
import { markStarted } from './started.ts';
import type { Queue } from './ports.ts';
import type { Manifest } from './status.ts';
import { countChunk, parseChunkMessage, processChunk, writeFailedChunk, type ChunkResult, type WorkerDeps } from './worker.ts';

export const finalizeMessageSchema = z.object({ type: z.literal('finalize'), jobId: z.string() });

/**
 * The message that asks for a job's manifest: finishes a job whose finisher died (after its claim's
 * lease), from any runtime.
 *
 * @example
 * await queue.send([finalizeMessage(jobId)]);
 */
export function finalizeMessage(jobId: string): string {
  return JSON.stringify({ type: 'finalize', jobId });
}

export interface MessageDeps extends WorkerDeps, CallbackDeps {
  /** Continuations, chunk messages of planned slices, and callback messages go here. */
  queue: Pick<Queue, 'send'>;
}

export interface MessageContext {
  /** 1 on the first delivery. */
  receiveCount: number;
  /** Deliveries allowed on this queue (the dead-letter queue's own count for dead letters). */
  maxReceiveCount: number;
  /** The message comes from the dead-letter queue: it will not be fetched again. */
  deadLetter?: boolean;
  /** With `deadLetter`: how many deliveries the live queue made (for the records' message). */
  deliveries?: number;
  /** Epoch ms by which this delivery must be done (a Lambda's deadline). */
  deadline?: number;
}

export type MessageType = 'chunk' | 'plan' | 'finalize' | 'callback' | 'unknown';

export interface MessageResult {
  type: MessageType;
  jobId?: string;
  deadLetter: boolean;
  /** What happened: a chunk outcome, a plan slice outcome, `finished`, `delivered`, `lost`, ... */
  outcome: string;
  chunk?: ChunkResult;
  manifest?: Manifest | null;
  delivery?: CallbackDelivery | null;
  /** Why a dead letter's last try gave up (it is acknowledged anyway). */
  error?: unknown;
}

const envelope = z.object({ type: z.string().optional(), jobId: z.string().optional() }).passthrough();

/**
 * Handles one delivery of any message. Throws when the delivery should be retried; on a dead
 * letter's last try it never throws.
 *
 * @example
 * const result = await handleMessage(deps, message.body, { receiveCount: message.receiveCount, maxReceiveCount: queue.maxReceiveCount });
 * await queue.delete(message.receipt);
 */
export async function handleMessage(deps: MessageDeps, body: string, context: MessageContext): Promise<MessageResult> {
  let parsed: z.infer<typeof envelope> = {};
  try {
    parsed = envelope.parse(JSON.parse(body));
  } catch {
    // Not JSON: handled below as an unknown message (a live one throws, a dead letter is dropped).
  }
  const type = (['chunk', 'plan', 'finalize', 'callback'].includes(parsed.type ?? '') ? parsed.type : 'unknown') as MessageType;
  const deadLetter = context.deadLetter ?? false;
  const base = { type, jobId: parsed.jobId, deadLetter };
  if (!deadLetter) return { ...base, ...(await handleLive(deps, type, body, context)) };
  try {
    return { ...base, ...(await handleDeadLetter(deps, type, body, context)) };
  } catch (error) {
    if (context.receiveCount < context.maxReceiveCount) throw error;
    // Last try: record what can be recorded and let the message go; it must not loop.
    return { ...base, outcome: 'abandoned', error };
  }
}

type Handled = Omit<MessageResult, 'type' | 'jobId' | 'deadLetter'>;

async function handleLive(deps: MessageDeps, type: MessageType, body: string, context: MessageContext): Promise<Handled> {
  if (type === 'chunk') {
    const finalReceive = context.receiveCount >= context.maxReceiveCount;
    // Status says running from the first chunk received, not the first one finished; a failure here costs only that.
    await markStarted(deps.store, parseChunkMessage(body).jobId).catch(() => {});
    const chunk = await processChunk(deps, body, { finalReceive, deadline: context.deadline });
    if (chunk.continuation) await deps.queue.send([chunk.continuation]);
    return { outcome: chunk.outcome, chunk };
  }
  if (type === 'plan') {
    const outcome = await planSlice(deps.store, deps.queue, body, { deadline: context.deadline });
    if (outcome.kind === 'continued') await deps.queue.send([outcome.message]);
    return { outcome: outcome.kind };
  }
  if (type === 'finalize') {
    const { jobId } = finalizeMessageSchema.parse(JSON.parse(body));
    const job = await loadJob(deps.store, jobId);
    if (await deps.store.exists(layout.manifest(jobId))) return { outcome: 'already-finished', manifest: null };
    const ledger = deps.ledger ?? ledgerFor(deps.store);
    if ((await ledger.progress(jobId)).chunksDone < job.chunks) return { outcome: 'incomplete', manifest: null };
    const manifest = await finishJob(deps, job, 'finalize');
    return { outcome: manifest ? 'finished' : 'already-finished', manifest };
  }
  if (type === 'callback') {
    const { jobId } = callbackMessageSchema.parse(JSON.parse(body));
    const delivery = await deliverCallback(deps, jobId);
    // The next attempt is a delayed message: no worker waits through the backoff.
    if (delivery?.retryInMs !== undefined) await deps.queue.send([callbackMessage(jobId)], { delayMs: delivery.retryInMs });
    return { outcome: delivery ? delivery.entry.state : 'no-callback', delivery };
  }
  throw new Error(`unknown message type in ${body.slice(0, 200)}`);
}

async function handleDeadLetter(deps: MessageDeps, type: MessageType, body: string, context: MessageContext): Promise<Handled> {
  if (type === 'chunk') {
    const { jobId, chunk } = parseChunkMessage(body);
    const job = await loadJob(deps.store, jobId);
    try {
      const result = await writeFailedChunk(deps, job, chunk, `chunk ${chunk} failed on ${context.deliveries ? `all ${context.deliveries}` : 'every'} deliveries`);
      return { outcome: result.outcome, chunk: result };
    } catch (error) {
      // Earlier tries may meet a passing fault: try again.
      if (context.receiveCount < context.maxReceiveCount) throw error;
      // The last try, and not even chunk_failed records can be written: count the chunk as failed
      // and lost, so the job still ends (its manifest and status name the chunk in lostChunks).
      const counts = lostChunkCounts(chunkItemCount(job, chunk));
      await countChunk(deps, job, chunk, counts, { lost: true });
      return { outcome: 'lost', chunk: { jobId, chunk, outcome: 'lost', counts }, error };
    }
  }
  if (type === 'plan') {
    const { jobId } = JSON.parse(body) as { jobId: string };
    await deps.store.put(layout.rejected(jobId), JSON.stringify({ message: 'planning failed on every delivery' }), { ifAbsent: true });
    return { outcome: 'rejected' };
  }
  if (type === 'finalize') {
    // Finishing is cheap and idempotent: one more try, then the job's next chunk or recover finishes it.
    return handleLive(deps, type, body, { receiveCount: 1, maxReceiveCount: 1 });
  }
  if (type === 'callback') {
    const { jobId } = callbackMessageSchema.parse(JSON.parse(body));
    const entry = await readCallbackOutbox(deps.store, jobId);
    if (entry?.state === 'pending') {
      await deps.store.put(layout.callback(jobId), JSON.stringify({ ...entry, state: 'failed', updatedAt: new Date().toISOString() }), { contentType: 'application/json' });
    }
    return { outcome: 'failed' };
  }
  return { outcome: 'dropped' };
}
