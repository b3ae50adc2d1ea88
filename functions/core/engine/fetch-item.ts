/**
 * Fetches one item: attempts with a whole-attempt deadline, retries with backoff and Retry-After,
 * redirects followed by hand (each hop goes through the guarded connector again), and the body
 * read through the decoder with its size cut. Always resolves to a record; never throws.
 */
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { IndexedItem } from '../input.ts';
import type { JobOptions } from '../options.ts';
import { isoTimestamp, makeRecord, type ErrorCode, type FetchRecord, type RecordError, type ResponseHeaders } from '../record.ts';
import { exchange, type BodyPolicy, type Exchange } from './exchange.ts';
import { classifyError } from './classify.ts';
import { backoffMs, isRetryableFailure, isRetryableStatus, retryAfterMs, sleep } from './retry.ts';

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
  headers: ResponseHeaders;
  finalUrl: string;
  redirects: number;
  bytes: number;
  truncated: boolean;
  data: Buffer | null;
  decoded: boolean;
  sha256: string | null;
  retryAfter?: number;
}

type AttemptOutcome =
  | { kind: 'response'; response: Response; retry: boolean }
  | { kind: 'error'; error: RecordError; retryable: boolean; partial?: Partial<Response> };

class DeadlineError extends Error {
  override name = 'DeadlineError';
}

/**
 * One attempt's state: its deadline and its body policy for the exchange. The deadline runs while a
 * request holds a connection slot (connect to last body byte), not while it waits for one: the
 * exchange starts it when undici gives the request its slot; it stops between redirect hops. One
 * object per attempt, no closures (the hot path).
 */
class Attempt implements BodyPolicy {
  timedOut = false;
  /** The exchange in flight, aborted when the time is up or the job is cancelled. */
  current: Exchange | undefined;
  readonly limit: number;
  private remaining: number;
  private timer: NodeJS.Timeout | undefined;
  private clockAt = 0;
  /** The attempt is over: a request that gets its slot only now (it was aborted while queued) starts no timer. */
  private finished = false;

  constructor(
    private readonly options: JobOptions,
    readonly keep: boolean,
    /** The last attempt: a retryable status is kept, not discarded. */
    private readonly last: boolean,
  ) {
    this.remaining = options.timeoutMs;
    this.limit = options.maxBodyBytes;
  }

  get spent(): boolean {
    return this.remaining <= 0;
  }

  error(): DeadlineError {
    return new DeadlineError(`no complete response within ${this.options.timeoutMs} ms`);
  }

  /** A redirect to follow: its body is not read. */
  followsRedirect(status: number, headers: ResponseHeaders): boolean {
    return REDIRECT_STATUSES.has(status) && headers.location !== undefined && this.options.maxRedirects > 0;
  }

  /** A status this attempt retries (not on the last one). */
  retriesStatus(status: number): boolean {
    return !this.last && isRetryableStatus(status);
  }

  /** BodyPolicy: the body of a redirect or of a retried status is discarded unread. */
  discard(status: number, headers: ResponseHeaders): boolean {
    return this.followsRedirect(status, headers) || this.retriesStatus(status);
  }

  /** BodyPolicy: the clock starts when the request gets its connection slot. */
  start(): void {
    if (this.timer !== undefined || this.finished) return;
    this.clockAt = performance.now();
    this.timer = setTimeout(Attempt.fire, Math.max(0, this.remaining), this);
  }

  stop(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.remaining -= performance.now() - this.clockAt;
  }

  /** Stops the clock for good. */
  finish(): void {
    this.stop();
    this.finished = true;
  }

  private static fire(attempt: Attempt): void {
    attempt.timer = undefined;
    attempt.remaining = 0;
    attempt.timedOut = true;
    attempt.current?.abort(attempt.error());
  }
}

/**
 * Attempts in flight by cancel signal: one 'abort' listener per signal (a chunk's), not one per
 * attempt; a cancel aborts every exchange in flight under it.
 */
const inFlight = new WeakMap<AbortSignal, Set<Attempt>>();

function track(signal: AbortSignal, attempt: Attempt): void {
  let attempts = inFlight.get(signal);
  if (!attempts) {
    const set = (attempts = new Set());
    inFlight.set(signal, set);
    signal.addEventListener('abort', () => {
      for (const a of set) a.current?.abort(new Error('cancelled'));
    }, { once: true });
  }
  attempts.add(attempt);
}

/** The job's request headers, lower-cased, built once per job options object. */
const jobHeaders = new WeakMap<JobOptions, Record<string, string>>();

function jobRequestHeaders(options: JobOptions): Record<string, string> {
  let base = jobHeaders.get(options);
  if (!base) {
    base = { 'user-agent': options.userAgent, 'accept-encoding': 'gzip, deflate, br' };
    for (const [k, v] of Object.entries(options.headers)) base[k.toLowerCase()] = v;
    jobHeaders.set(options, base);
  }
  return base;
}

/** The request headers of an item: the job's own object, unless the item adds some (then a copy). */
function requestHeaders(item: IndexedItem, options: JobOptions): Record<string, string> {
  const base = jobRequestHeaders(options);
  if (!item.headers) return base;
  const headers = { ...base };
  for (const [k, v] of Object.entries(item.headers)) headers[k.toLowerCase()] = v;
  return headers;
}

/**
 * Fetches one item and returns its record. Errors become `error` codes; nothing is thrown.
 *
 * @example
 * const { record } = await fetchItem({ index: 0, url: 'https://example.com/' }, parseJobOptions({}), { dispatcher: agent });
 */
export async function fetchItem(item: IndexedItem, options: JobOptions, ctx: FetchContext): Promise<FetchResult> {
  const startedAt = Date.now();
  const t0 = performance.now();
  const keep = options.bodies !== 'none';
  const queue: QueueTime = { ms: 0 };
  let attempts = 0;
  let outcome: AttemptOutcome;

  for (;;) {
    attempts++;
    const last = attempts > options.retries;
    outcome = await attempt(item, options, ctx, last, keep, queue);
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

  // Waiting for a connection slot is the worker's own congestion, not the site's time: kept apart.
  const durationMs = Math.round((performance.now() - t0 - queue.ms) * 10) / 10;
  const queuedMs = Math.round(queue.ms * 10) / 10;
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
    sha256: response?.sha256 ?? null,
    attempts,
    startedAt: isoTimestamp(startedAt),
    durationMs,
    queuedMs,
    error: outcome.kind === 'error' ? outcome.error : null,
  });
  if (!response) return { record, body: null, contentType: undefined };
  const contentType = response.headers['content-type'];
  return { record, body: response.data, contentType: response.decoded ? (contentType as string | undefined) : 'application/octet-stream' };
}

/** Milliseconds an item's requests waited for connection slots, summed over hops and attempts. */
interface QueueTime {
  ms: number;
}

/** What a failure before any response keeps of it: nothing (shared; never changed, only spread). */
const NOTHING_YET: Partial<Response> = Object.freeze({});

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
  queue: QueueTime,
): Promise<AttemptOutcome> {
  const cancel = ctx.signal;
  if (cancel?.aborted) return cancelledOutcome();
  // The exchange in flight is aborted by the deadline or the cancel.
  const state = new Attempt(options, keep, last);
  if (cancel) track(cancel, state);

  let url = item.url;
  let method = item.method ?? options.method;
  let body: string | null = item.body !== undefined ? item.body : options.body;
  let headers = requestHeaders(item, options);
  /** `headers` is this attempt's own copy (else it is the job's, shared: copied before a change). */
  let ownHeaders = item.headers !== undefined;
  let redirects = 0;
  let partial: Partial<Response> = NOTHING_YET;

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
        if (!ownHeaders) (headers = { ...headers }), (ownHeaders = true);
        const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
        headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
      }

      if (state.spent) {
        state.timedOut = true;
        throw state.error();
      }
      const ex = exchange(ctx.dispatcher, { origin: target.origin, path: target.pathname + target.search, method, headers, body }, state);
      state.current = ex;
      if (cancel?.aborted) ex.abort(new Error('cancelled'));
      let res;
      try {
        res = await ex.result;
      } finally {
        state.stop();
        queue.ms += ex.queuedMs;
      }
      if (state.followsRedirect(res.status, res.headers)) {
        // If a later hop fails, its record keeps this response.
        partial = { status: res.status, headers: res.headers, finalUrl: target.href, redirects };
        if (redirects >= options.maxRedirects) {
          return errorOutcome('too_many_redirects', `more than ${options.maxRedirects} redirects`, partial);
        }
        let next: URL;
        try {
          next = new URL(res.location!, target);
        } catch {
          return errorOutcome('invalid_url', `redirect to an invalid URL: ${String(res.headers.location).slice(0, 200)}`, partial);
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          return errorOutcome('invalid_url', `redirect to unsupported scheme ${next.protocol}`, partial);
        }
        redirects++;
        if (!ownHeaders) (headers = { ...headers }), (ownHeaders = true);
        if (res.status === 303 ? method !== 'HEAD' : (res.status === 301 || res.status === 302) && method === 'POST') {
          method = 'GET';
          body = null;
          delete headers['content-type'];
          delete headers['content-length'];
        }
        if (next.origin !== target.origin) {
          for (const h of CREDENTIAL_HEADERS) delete headers[h];
          // Headers from the environment (headerEnv) are credentials by definition: they stay with their origin too.
          for (const h of Object.keys(options.headerEnv ?? {})) delete headers[h.toLowerCase()];
        }
        url = next.href;
        // If the next hop fails, the record says where fanout was going and how far it got.
        partial = { ...partial, finalUrl: url, redirects };
        continue;
      }

      const response: Response = {
        status: res.status,
        headers: res.headers,
        finalUrl: target.href,
        redirects,
        bytes: res.bytes,
        truncated: res.truncated,
        data: res.data,
        decoded: res.decoded,
        sha256: res.sha256,
      };
      if (state.retriesStatus(res.status)) {
        return { kind: 'response', response: { ...response, retryAfter: retryAfterMs(res.headers['retry-after']) }, retry: true };
      }
      return { kind: 'response', response, retry: false };
    }
  } catch (error) {
    const got = error as { responseStatus?: number; responseHeaders?: ResponseHeaders };
    const midBody = got.responseStatus !== undefined;
    if (midBody) partial = { ...partial, status: got.responseStatus, headers: got.responseHeaders };
    if (cancel?.aborted) return { ...cancelledOutcome(), partial } as AttemptOutcome;
    if (state.timedOut) {
      const message = `no complete response within ${options.timeoutMs} ms`;
      return { kind: 'error', error: { code: 'timeout', message }, retryable: isRetryableFailure(true, midBody, method), partial };
    }
    const { code, transient, message } = classifyError(error, midBody);
    return { kind: 'error', error: { code, message }, retryable: isRetryableFailure(transient, midBody, method), partial };
  } finally {
    state.finish();
    if (cancel) inFlight.get(cancel)?.delete(state);
  }
}
