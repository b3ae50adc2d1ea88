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
import { setTimeout as sleep } from 'node:timers/promises';
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
  /** Attempts in total, counted in the outbox entry so a restart continues the count. */
  attempts: 5,
  /** Backoff before attempt n+1: retryBaseMs * 2^(n-1) (0.5, 1, 2, 4 s). */
  retryBaseMs: 500,
  timeoutMs: 10_000,
} as const;

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
  /** Backoff base, for tests. */
  callbackRetryBaseMs?: number;
}

export interface CallbackDelivery {
  entry: CallbackEntry;
  /** The last attempt's record; null when nothing was sent (no callback, or already settled). */
  record: FetchRecord | null;
}

/**
 * Delivers a finished job's callback from its outbox entry: at most CALLBACK_DEFAULTS.attempts in
 * total (across restarts), with backoff; a settled entry (delivered or failed) sends nothing again.
 *
 * @returns null when the job has no callbackUrl.
 * @example
 * await deliverCallback({ store, fetcher, callbackSecret: async () => process.env.FANOUT_CALLBACK_SECRET }, jobId);
 */
export async function deliverCallback(deps: CallbackDeps, jobId: string): Promise<CallbackDelivery | null> {
  const { store, fetcher } = deps;
  const job = await loadJob(store, jobId);
  const url = job.options.callbackUrl;
  if (!url) return null;
  const entry: CallbackEntry = (await readCallbackOutbox(store, jobId)) ?? { state: 'pending', attempts: 0, updatedAt: new Date().toISOString() };
  if (entry.state !== 'pending') return { entry, record: null };
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
  const save = async () => {
    entry.updatedAt = new Date().toISOString();
    await store.put(layout.callback(jobId), JSON.stringify(entry), { contentType: 'application/json' });
  };
  let record: FetchRecord | null = null;
  while (entry.attempts < CALLBACK_DEFAULTS.attempts) {
    if (entry.attempts > 0) await sleep((deps.callbackRetryBaseMs ?? CALLBACK_DEFAULTS.retryBaseMs) * 2 ** (entry.attempts - 1));
    entry.attempts++;
    // Counted before sending: a process that dies mid-attempt has used it.
    await save();
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-fanout-job': jobId,
      [CALLBACK_DEFAULTS.timestampHeader]: String(timestamp),
    };
    if (secret) headers[CALLBACK_DEFAULTS.signatureHeader] = signCallback(secret, timestamp, body);
    ({ record } = await fetcher.fetch({ index: 0, url, method: 'POST', body, headers }, options));
    entry.status = record.status;
    entry.error = record.error?.code ?? null;
    if (record.ok) {
      entry.state = 'delivered';
      break;
    }
    const retryable = record.status === 429 || (record.status !== null && record.status >= 500) || (record.status === null && RETRYABLE.has(record.error?.code ?? ''));
    if (!retryable) break;
  }
  if (entry.state !== 'delivered') entry.state = 'failed';
  await save();
  return { entry, record };
}
