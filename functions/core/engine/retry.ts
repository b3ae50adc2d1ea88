/**
 * When to try again and how long to wait: exponential backoff with full jitter, and Retry-After
 * honoured up to a cap.
 */

/** Statuses that say "try again later". */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
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
