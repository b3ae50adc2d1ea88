/**
 * When to try again and how long to wait. The retry rules are stated here once (README's table
 * says the same): exponential backoff with full jitter, and Retry-After honoured up to a cap.
 */
import type { ErrorCode } from '../record.ts';

/**
 * The rules, as data. An attempt is retried (while `retries` allows) when:
 * - its response status is 429 or 5xx, except 501 and 505, which will not change on another try;
 * - it failed with a transient error: `connect`, `timeout`, `reset`, or a temporary `dns` failure
 *   (a name that does not exist is final);
 * - but once the response had begun (a failure mid-body: connection lost, body shorter than its
 *   Content-Length, deadline), only idempotent methods are retried: the server has acted on the
 *   request, and repeating a POST could repeat its effect.
 * `tls`, `protocol`, `invalid_url`, `blocked` and `too_many_redirects` are never retried.
 */
export const RETRY_RULES = {
  /** Statuses that say "try again later". */
  retriedStatuses: '429, 500-599',
  /** 5xx statuses that say "this will not work": not retried. */
  finalStatuses: [501, 505] as readonly number[],
  /** Error codes of failures that can pass with time. */
  transientErrors: ['connect', 'timeout', 'reset', 'dns'] as readonly ErrorCode[],
  /** Methods retried after a failure mid-body (RFC 9110 9.2.2 idempotent methods). */
  idempotentMethods: ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE'] as readonly string[],
} as const;

const FINAL_STATUSES: ReadonlySet<number> = new Set(RETRY_RULES.finalStatuses);
const TRANSIENT: ReadonlySet<ErrorCode> = new Set(RETRY_RULES.transientErrors);
const IDEMPOTENT: ReadonlySet<string> = new Set(RETRY_RULES.idempotentMethods);

/**
 * Whether a response status is worth another attempt.
 *
 * @example
 * isRetryableStatus(503) // true
 * isRetryableStatus(501) // false
 */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599 && !FINAL_STATUSES.has(status));
}

/** Whether an error code names a failure that can pass with time (before any other consideration). */
export function isTransientError(code: ErrorCode): boolean {
  return TRANSIENT.has(code);
}

/**
 * Whether a failed attempt is worth another one.
 *
 * @param transient the failure can pass with time (from {@link classifyError})
 * @param midBody the response had begun when it failed
 * @example
 * isRetryableFailure(true, true, 'GET')  // true: connection lost mid-body
 * isRetryableFailure(true, true, 'POST') // false
 */
export function isRetryableFailure(transient: boolean, midBody: boolean, method: string): boolean {
  return transient && (!midBody || IDEMPOTENT.has(method.toUpperCase()));
}

/**
 * Milliseconds a Retry-After header asks for (delta-seconds or an HTTP-date), or undefined.
 *
 * @example
 * retryAfterMs('2') // 2000
 */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * Delay before attempt `attempt + 1` (attempt counts from 1): the server's Retry-After when given,
 * else `base * 2^(attempt-1)` with full jitter; never more than `cap`.
 *
 * @example
 * backoffMs(3, 100, 10_000, undefined, () => 1) // 400
 */
export function backoffMs(attempt: number, base: number, cap: number, retryAfter?: number, random = Math.random): number {
  if (retryAfter !== undefined) return Math.min(retryAfter, cap);
  const ceiling = Math.min(cap, base * 2 ** (attempt - 1));
  return Math.round(random() * ceiling);
}

/** Sleeps, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 && !signal?.aborted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
