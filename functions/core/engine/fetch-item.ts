/**
 * Fetches one item: attempts with a whole-attempt deadline, retries with backoff and Retry-After,
 * redirects followed by hand (each hop goes through the guarded connector again), and the body
 * read through the decoder with its size cut. Always resolves to a record; never throws.
 */
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { IndexedItem } from '../input.ts';
import type { JobOptions } from '../options.ts';
import { makeRecord, type ErrorCode, type FetchRecord, type RecordError } from '../record.ts';
import { exchange, type Exchange } from './exchange.ts';
import { classifyError } from './classify.ts';
import { backoffMs, isRetryableStatus, retryAfterMs, sleep } from './retry.ts';

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Headers that must not follow a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

/** What the worker needs beyond the record: the kept body bytes and their type. */
export interface FetchResult {
  record: FetchRecord;
  body: Buffer | null;
  contentType: string | undefined;
}

export interface FetchContext {
  dispatcher: Dispatcher;
  /** Aborts the item for good: the record gets `cancelled`. */
  signal?: AbortSignal;
  /** Test hook for jitter. */
  random?: () => number;
}

interface Response {
  status: number;
  headers: Record<string, string>;
  finalUrl: string;
  redirects: number;
  bytes: number;
  truncated: boolean;
  data: Buffer | null;
  decoded: boolean;
  retryAfter?: number;
}

type AttemptOutcome =
  | { kind: 'response'; response: Response; retry: boolean }
  | { kind: 'error'; error: RecordError; retryable: boolean; partial?: Partial<Response> };

class DeadlineError extends Error {
  override name = 'DeadlineError';
}

/** The job's request headers, lower-cased, built once per job options object. */
const jobHeaders = new WeakMap<JobOptions, Record<string, string>>();

function requestHeaders(item: IndexedItem, options: JobOptions): Record<string, string> {
  let base = jobHeaders.get(options);
  if (!base) {
    base = { 'user-agent': options.userAgent, 'accept-encoding': 'gzip, deflate, br' };
    for (const [k, v] of Object.entries(options.headers)) base[k.toLowerCase()] = v;
    jobHeaders.set(options, base);
  }
  // A copy per attempt: redirects may drop credentials from it.
  const headers = { ...base };
  if (item.headers) for (const [k, v] of Object.entries(item.headers)) headers[k.toLowerCase()] = v;
  return headers;
}

/**
 * Fetches one item and returns its record. Errors become `error` codes; nothing is thrown.
 *
 * @example
 * const { record } = await fetchItem({ index: 0, url: 'https://example.com/' }, parseJobOptions({}), { dispatcher: agent });
 */
export async function fetchItem(item: IndexedItem, options: JobOptions, ctx: FetchContext): Promise<FetchResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const keep = options.bodies !== 'none';
  let attempts = 0;
  let outcome: AttemptOutcome;

  for (;;) {
    attempts++;
    const last = attempts > options.retries;
    outcome = await attempt(item, options, ctx, last, keep);
    const retry = outcome.kind === 'response' ? outcome.retry : outcome.retryable && !last;
    if (!retry || ctx.signal?.aborted) break;
    const delay = backoffMs(
      attempts,
      options.retryBaseMs,
      options.retryMaxDelayMs,
      outcome.kind === 'response' ? outcome.response.retryAfter : undefined,
      ctx.random,
    );
    try {
      await sleep(delay, ctx.signal);
    } catch {
      outcome = cancelledOutcome();
      break;
    }
  }

  const durationMs = Math.round((performance.now() - t0) * 10) / 10;
  const response = outcome.kind === 'response' ? outcome.response : undefined;
  const got: Partial<Response> = response ?? (outcome.kind === 'error' ? (outcome.partial ?? {}) : {});
  const record = makeRecord({
    index: item.index,
    url: item.url,
    id: item.id ?? null,
    ok: response !== undefined && response.status >= 200 && response.status < 300,
    status: got.status ?? null,
    finalUrl: got.finalUrl ?? null,
    redirects: got.redirects ?? 0,
    headers: got.headers ?? {},
    bytes: got.bytes ?? 0,
    truncated: response?.truncated ?? false,
    attempts,
    startedAt: startedAt.toISOString(),
    durationMs,
    error: outcome.kind === 'error' ? outcome.error : null,
  });
  if (!response) return { record, body: null, contentType: undefined };
  return { record, body: response.data, contentType: response.decoded ? response.headers['content-type'] : 'application/octet-stream' };
}

function cancelledOutcome(): AttemptOutcome {
  return { kind: 'error', error: { code: 'cancelled', message: 'the job was cancelled' }, retryable: false };
}

function errorOutcome(code: ErrorCode, message: string, partial?: Partial<Response>): AttemptOutcome {
  return { kind: 'error', error: { code, message }, retryable: false, partial };
}

async function attempt(
  item: IndexedItem,
  options: JobOptions,
  ctx: FetchContext,
  last: boolean,
  keep: boolean,
): Promise<AttemptOutcome> {
  const cancel = ctx.signal;
  if (cancel?.aborted) return cancelledOutcome();
  // One timer and one listener per attempt: the exchange in flight is aborted by either.
  let current: Exchange | undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    current?.abort(new DeadlineError(`no complete response within ${options.timeoutMs} ms`));
  }, options.timeoutMs);
  const onCancel = () => current?.abort(new Error('cancelled'));
  cancel?.addEventListener('abort', onCancel, { once: true });

  let url = item.url;
  let method = item.method ?? options.method;
  let body: string | null = item.body !== undefined ? item.body : options.body;
  const headers = requestHeaders(item, options);
  let redirects = 0;
  let partial: Partial<Response> = {};
  const followsRedirect = (status: number, h: Record<string, string>) =>
    REDIRECT_STATUSES.has(status) && h.location !== undefined && options.maxRedirects > 0;
  const retriesStatus = (status: number) => !last && isRetryableStatus(status);

  try {
    for (;;) {
      let target: URL;
      try {
        target = new URL(url);
      } catch {
        return errorOutcome('invalid_url', `not a valid URL: ${url.slice(0, 200)}`, partial);
      }
      if (target.protocol !== 'http:' && target.protocol !== 'https:') {
        return errorOutcome('invalid_url', `unsupported scheme ${target.protocol} in ${url.slice(0, 200)}`, partial);
      }
      if (target.username && !headers.authorization) {
        const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
        headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
      }

      current = exchange(
        ctx.dispatcher,
        { origin: target.origin, path: target.pathname + target.search, method, headers, body },
        { limit: options.maxBodyBytes, keep, discard: (status, h) => followsRedirect(status, h) || retriesStatus(status) },
      );
      if (timedOut) current.abort(new DeadlineError(`no complete response within ${options.timeoutMs} ms`));
      if (cancel?.aborted) current.abort(new Error('cancelled'));
      const res = await current.result;
      partial = { status: res.status, headers: res.headers, finalUrl: target.href, redirects };

      if (followsRedirect(res.status, res.headers)) {
        if (redirects >= options.maxRedirects) {
          return errorOutcome('too_many_redirects', `more than ${options.maxRedirects} redirects`, partial);
        }
        let next: URL;
        try {
          next = new URL(res.headers.location!, target);
        } catch {
          return errorOutcome('invalid_url', `redirect to an invalid URL: ${res.headers.location!.slice(0, 200)}`, partial);
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          return errorOutcome('invalid_url', `redirect to unsupported scheme ${next.protocol}`, partial);
        }
        redirects++;
        if (res.status === 303 ? method !== 'HEAD' : (res.status === 301 || res.status === 302) && method === 'POST') {
          method = 'GET';
          body = null;
          delete headers['content-type'];
          delete headers['content-length'];
        }
        if (next.origin !== target.origin) for (const h of CREDENTIAL_HEADERS) delete headers[h];
        url = next.href;
        // If the next hop fails, the record says where fanout was going and how far it got.
        partial = { ...partial, finalUrl: url, redirects };
        continue;
      }

      const response: Response = { ...res, finalUrl: target.href, redirects };
      if (retriesStatus(res.status)) {
        return { kind: 'response', response: { ...response, retryAfter: retryAfterMs(res.headers['retry-after']) }, retry: true };
      }
      return { kind: 'response', response, retry: false };
    }
  } catch (error) {
    const midBody = error as { responseStatus?: number; responseHeaders?: Record<string, string> };
    if (midBody.responseStatus !== undefined) partial = { ...partial, status: midBody.responseStatus, headers: midBody.responseHeaders };
    if (cancel?.aborted) return { ...cancelledOutcome(), partial } as AttemptOutcome;
    if (timedOut) {
      return { kind: 'error', error: { code: 'timeout', message: `no complete response within ${options.timeoutMs} ms` }, retryable: true, partial };
    }
    const { code, retryable, message } = classifyError(error, midBody.responseStatus !== undefined);
    return { kind: 'error', error: { code, message }, retryable, partial };
  } finally {
    clearTimeout(timer);
    cancel?.removeEventListener('abort', onCancel);
  }
}
