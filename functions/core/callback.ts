/**
 * The completion callback: when a job with `callbackUrl` ends, its final status is POSTed there,
 * signed, retried with backoff, and sent through the worker's fetcher, so the address guard
 * applies to callbacks as to any URL. It is an outbox: the finisher writes jobs/JOB/callback.json
 * (pending) before the manifest and sends a `callback` message; the entry counts attempts and ends
 * delivered or failed, so a restart (recover) or a redelivery resumes it and never repeats a delivery.
 *
 * Verifying a callback: compute HMAC-SHA256 over `TIMESTAMP + "." + BODY` with the shared secret
 * (FANOUT_CALLBACK_SECRET, else the API token) and compare it, in constant time, with the hex after
 * `sha256=` in `X-Fanout-Signature`; TIMESTAMP is the `X-Fanout-Timestamp` header (Unix seconds).
 */
import { createHmac } from 'node:crypto';
import { z } from 'zod';
import type { Fetcher } from './engine/fetcher.ts';
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import type { Ledger } from './ledger.ts';
import { parseJobOptions } from './options.ts';
import type { ObjectStore } from './ports.ts';
import type { FetchRecord } from './record.ts';
import { jobStatus } from './status.ts';

/** Callback delivery, stated once. */
export const CALLBACK_DEFAULTS = {
  signatureHeader: 'x-fanout-signature',
  timestampHeader: 'x-fanout-timestamp',
  /**
   * Waits before attempts 2, 3, 4 and 5 (1 s, 10 s, 1 min, 5 min): attempts span about 6 minutes, so
   * a receiver down for a restart still hears. Each wait is a delayed `callback` message (at most
   * SQS's 15 minutes), not a sleep: no worker is held while waiting.
   */
  backoffMs: [1_000, 10_000, 60_000, 300_000],
  timeoutMs: 10_000,
} as const;

/** Attempts in total (1 + one per backoff), counted in the outbox entry so a restart continues the count. */
export const CALLBACK_ATTEMPTS = CALLBACK_DEFAULTS.backoffMs.length + 1;

/** Errors worth another attempt; anything else (blocked, invalid_url, a 4xx) will not change. */
const RETRYABLE = new Set(['dns', 'connect', 'tls', 'timeout', 'reset', 'protocol', 'internal']);

export const callbackMessageSchema = z.object({ type: z.literal('callback'), jobId: z.string() });

/**
 * The queue message that delivers a finished job's callback.
 *
 * @example
 * await queue.send([callbackMessage(jobId)]);
 */
export function callbackMessage(jobId: string): string {
  return JSON.stringify({ type: 'callback', jobId });
}

/** The outbox entry (jobs/JOB/callback.json). */
export interface CallbackEntry {
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  updatedAt: string;
  /** The last attempt's HTTP status, or null when no response came. */
  status?: number | null;
  error?: string | null;
  /** While pending after a failed attempt: when the next one is due (ISO 8601). */
  nextAttemptAt?: string | null;
}

/**
 * Creates the pending outbox entry (if absent): written before the manifest by the finisher.
 *
 * @example
 * if (job.options.callbackUrl) await writeCallbackOutbox(store, job.jobId);
 */
export async function writeCallbackOutbox(store: ObjectStore, jobId: string): Promise<void> {
  const entry: CallbackEntry = { state: 'pending', attempts: 0, updatedAt: new Date().toISOString() };
  await store.put(layout.callback(jobId), JSON.stringify(entry), { ifAbsent: true, contentType: 'application/json' });
}

/**
 * The outbox entry of a job's callback, or null when it has none.
 *
 * @example
 * if ((await readCallbackOutbox(store, jobId))?.state === 'pending') await queue.send([callbackMessage(jobId)]);
 */
export async function readCallbackOutbox(store: ObjectStore, jobId: string): Promise<CallbackEntry | null> {
  const data = await store.get(layout.callback(jobId));
  return data ? (JSON.parse(data.toString('utf8')) as CallbackEntry) : null;
}

/**
 * `sha256=HEX` of `timestamp.body`.
 *
 * @example
 * signCallback('secret', 1764140000, '{"jobId":"..."}') // 'sha256=...'
 */
export function signCallback(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export interface CallbackDeps {
  store: ObjectStore;
  fetcher: Fetcher;
  ledger?: Ledger;
  /** The signing secret (AWS: read from Secrets Manager, cached). */
  callbackSecret?: () => Promise<string | undefined>;
  /** Tests: waits of retryBase * 2^(n-1) instead of CALLBACK_DEFAULTS.backoffMs. */
  callbackRetryBaseMs?: number;
}

/** The wait before attempt `attempts + 1`. */
function backoffAfter(deps: CallbackDeps, attempts: number): number {
  if (deps.callbackRetryBaseMs !== undefined) return deps.callbackRetryBaseMs * 2 ** (attempts - 1);
  return CALLBACK_DEFAULTS.backoffMs[Math.min(attempts, CALLBACK_DEFAULTS.backoffMs.length) - 1]!;
}

export interface CallbackDelivery {
  entry: CallbackEntry;
  /** The last attempt's record; null when nothing was sent (no callback, settled, or not due yet). */
  record: FetchRecord | null;
  /** Still pending: send the `callback` message again with this delay. */
  retryInMs?: number;
}

/**
 * Makes the next attempt at a finished job's callback from its outbox entry: one attempt per call,
 * at most CALLBACK_ATTEMPTS in total (across restarts); a settled entry (delivered or failed) sends
 * nothing again. After a failed attempt that may succeed later, `retryInMs` says when to call again
 * (the caller re-sends the `callback` message with that delay); a call before then sends nothing.
 *
 * @returns null when the job has no callbackUrl.
 * @example
 * const delivery = await deliverCallback(deps, jobId);
 * if (delivery?.retryInMs !== undefined) await queue.send([callbackMessage(jobId)], { delayMs: delivery.retryInMs });
 */
export async function deliverCallback(deps: CallbackDeps, jobId: string, now = Date.now()): Promise<CallbackDelivery | null> {
  const { store, fetcher } = deps;
  const job = await loadJob(store, jobId);
  const url = job.options.callbackUrl;
  if (!url) return null;
  const entry: CallbackEntry = (await readCallbackOutbox(store, jobId)) ?? { state: 'pending', attempts: 0, updatedAt: new Date().toISOString() };
  if (entry.state !== 'pending') return { entry, record: null };
  // Early (a restart re-sends pending callbacks at once): wait for the attempt's due time.
  const due = entry.nextAttemptAt ? Date.parse(entry.nextAttemptAt) : now;
  if (due > now + 500 && entry.attempts < CALLBACK_ATTEMPTS) return { entry, record: null, retryInMs: due - now };
  const save = async () => {
    entry.updatedAt = new Date().toISOString();
    await store.put(layout.callback(jobId), JSON.stringify(entry), { contentType: 'application/json' });
  };
  if (entry.attempts >= CALLBACK_ATTEMPTS) {
    entry.state = 'failed';
    entry.nextAttemptAt = null;
    await save();
    return { entry, record: null };
  }
  const body = JSON.stringify(await jobStatus(store, jobId, deps.ledger));
  const secret = await deps.callbackSecret?.();
  const options = parseJobOptions({
    method: 'POST',
    retries: 0,
    timeoutMs: CALLBACK_DEFAULTS.timeoutMs,
    maxRedirects: 0,
    bodies: 'none',
    maxBodyBytes: 64 * 1024,
    perHost: 1,
  });
  entry.attempts++;
  entry.nextAttemptAt = null;
  // Counted before sending: a process that dies mid-attempt has used it.
  await save();
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-fanout-job': jobId,
    [CALLBACK_DEFAULTS.timestampHeader]: String(timestamp),
  };
  if (secret) headers[CALLBACK_DEFAULTS.signatureHeader] = signCallback(secret, timestamp, body);
  const { record } = await fetcher.fetch({ index: 0, url, method: 'POST', body, headers }, options);
  entry.status = record.status;
  entry.error = record.error?.code ?? null;
  const retryable = record.status === 429 || (record.status !== null && record.status >= 500) || (record.status === null && RETRYABLE.has(record.error?.code ?? ''));
  let retryInMs: number | undefined;
  if (record.ok) entry.state = 'delivered';
  else if (!retryable || entry.attempts >= CALLBACK_ATTEMPTS) entry.state = 'failed';
  else {
    retryInMs = backoffAfter(deps, entry.attempts);
    entry.nextAttemptAt = new Date(Date.now() + retryInMs).toISOString();
  }
  await save();
  return { entry, record, ...(retryInMs !== undefined ? { retryInMs } : {}) };
}

/** The callback's state as GET /jobs/:id shows it, or null when the job has no outbox entry (yet). */
export async function callbackState(store: ObjectStore, jobId: string): Promise<{ state: CallbackEntry['state']; attempts: number; lastError: string | null; nextAttemptAt: string | null } | null> {
  const entry = await readCallbackOutbox(store, jobId);
  if (!entry) return null;
  const lastError = entry.error ? entry.error : entry.status && entry.state !== 'delivered' ? `HTTP ${entry.status}` : null;
  return { state: entry.state, attempts: entry.attempts, lastError, nextAttemptAt: entry.nextAttemptAt ?? null };
}
