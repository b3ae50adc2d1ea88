/**
 * The completion callback: when a job with `callbackUrl` ends, its final status is POSTed there,
 * signed, retried with backoff, and sent through the worker's fetcher, so the address guard
 * applies to callbacks as to any URL.
 *
 * Verifying a callback: compute HMAC-SHA256 over `TIMESTAMP + "." + BODY` with the shared secret
 * (FANOUT_CALLBACK_SECRET, else the API token) and compare it, in constant time, with the hex after
 * `sha256=` in `X-Fanout-Signature`; TIMESTAMP is the `X-Fanout-Timestamp` header (Unix seconds).
 */
import { createHmac } from 'node:crypto';
import type { Fetcher } from './engine/fetcher.ts';
import { loadJob } from './job.ts';
import { parseJobOptions } from './options.ts';
import type { ObjectStore } from './ports.ts';
import type { FetchRecord } from './record.ts';
import { jobStatus } from './status.ts';

/** Callback delivery, stated once. */
export const CALLBACK_DEFAULTS = {
  signatureHeader: 'x-fanout-signature',
  timestampHeader: 'x-fanout-timestamp',
  retries: 4,
  retryBaseMs: 500,
  timeoutMs: 10_000,
} as const;

/** `sha256=HEX` of `timestamp.body`. */
export function signCallback(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * POSTs a finished job's status to its callbackUrl, if it has one.
 *
 * @returns the delivery's record (ok, status, attempts, error), or null when there is no callback.
 * @example
 * await sendCallback(store, fetcher, manifest.jobId, process.env.FANOUT_CALLBACK_SECRET);
 */
export async function sendCallback(store: ObjectStore, fetcher: Fetcher, jobId: string, secret?: string): Promise<FetchRecord | null> {
  const job = await loadJob(store, jobId);
  const url = job.options.callbackUrl;
  if (!url) return null;
  const body = JSON.stringify(await jobStatus(store, jobId));
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-fanout-job': jobId,
    [CALLBACK_DEFAULTS.timestampHeader]: String(timestamp),
  };
  if (secret) headers[CALLBACK_DEFAULTS.signatureHeader] = signCallback(secret, timestamp, body);
  const options = parseJobOptions({
    method: 'POST',
    retries: CALLBACK_DEFAULTS.retries,
    retryBaseMs: CALLBACK_DEFAULTS.retryBaseMs,
    timeoutMs: CALLBACK_DEFAULTS.timeoutMs,
    maxRedirects: 0,
    bodies: 'none',
    maxBodyBytes: 64 * 1024,
    perHost: 1,
  });
  const { record } = await fetcher.fetch({ index: 0, url, method: 'POST', body, headers }, options);
  return record;
}
