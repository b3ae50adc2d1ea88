/**
 * The job option `ratePerHost`: at most N requests per second started per origin, per worker. A
 * token bucket per origin holding one token (no bursts: requests to an origin start at least 1/N s
 * apart, so 10 requests at 5/s take 1.8 s, which is what a rate asked for politeness means),
 * refilled every 1/N s; a request that finds it empty waits in the origin's line. The wait counts
 * as queue time (`queuedMs`), not toward the attempt's deadline. Origins whose bucket is full again
 * and with nothing waiting are dropped, so memory is bounded by the origins used within the last
 * interval, not by every host a long crawl has seen. Redirect hops and retries are requests too.
 */
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { failRequest, WrappedDispatcher } from './wrapped-dispatcher.ts';

/** Rate limiter defaults, stated once. */
export const RATE_DEFAULTS = {
  /** The origin table is swept for idle origins when it grows past this (and twice its last size). */
  sweepAt: 1024,
} as const;

interface Waiting {
  start: () => void;
  /** A request cancelled while it waited gives up its place without using a token. */
  signal?: AbortSignal;
  onCancel?: () => void;
}

interface OriginState {
  /** When the last request to the origin started. */
  last: number;
  /** Requests waiting for the origin's token, first come first served. */
  waiting: Waiting[];
  timer: NodeJS.Timeout | undefined;
}

/**
 * Per-origin token buckets for one rate. Spacing is kept between the moments requests are actually
 * handed on (not between planned ones), so a stalled event loop cannot release a bunch at once.
 *
 * @example
 * const rate = new OriginRate(5);
 * rate.schedule('https://example.com', () => send(a)); // now
 * rate.schedule('https://example.com', () => send(b)); // 200 ms later
 */
export class OriginRate {
  /** Milliseconds between requests to one origin. */
  readonly interval: number;
  private readonly origins = new Map<string, OriginState>();
  private sweepAt: number = RATE_DEFAULTS.sweepAt;

  constructor(
    readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) throw new RangeError(`rate must be a positive number, got ${perSecond}`);
    this.interval = 1000 / perSecond;
  }

  /** Origins tracked now: those used within the last interval or so, and those with requests waiting. */
  get size(): number {
    return this.origins.size;
  }

  /**
   * Runs `start` when the origin has a token: now, or once the interval since its last request has
   * passed. If `signal` aborts first, `onCancel` runs instead, when its turn comes, and the token
   * goes to the next request in line (a cancelled job does not hold up other jobs' requests).
   */
  schedule(origin: string, start: () => void, signal?: AbortSignal, onCancel?: () => void): void {
    const now = this.now();
    let state = this.origins.get(origin);
    if (!state) {
      if (this.origins.size >= this.sweepAt) this.sweep(now);
      state = { last: -Infinity, waiting: [], timer: undefined };
      this.origins.set(origin, state);
    }
    if (state.waiting.length === 0 && now - state.last >= this.interval) {
      state.last = now;
      start();
      return;
    }
    state.waiting.push({ start, signal, onCancel });
    if (!state.timer) this.arm(state, now);
  }

  private arm(state: OriginState, now: number): void {
    state.timer = setTimeout(() => this.release(state), Math.max(1, state.last + this.interval - now));
  }

  private release(state: OriginState): void {
    state.timer = undefined;
    const now = this.now();
    // Timers have millisecond grain and may fire a fraction early: wait out the rest.
    if (now - state.last < this.interval) return this.arm(state, now);
    let next = state.waiting.shift();
    while (next?.signal?.aborted) {
      next.onCancel?.();
      next = state.waiting.shift();
    }
    if (!next) return;
    state.last = now;
    next.start();
    if (state.waiting.length > 0) this.arm(state, now);
  }

  /** Drops origins with nothing waiting whose bucket has refilled: they would start afresh anyway. */
  private sweep(now: number): void {
    for (const [origin, state] of this.origins) {
      if (state.waiting.length === 0 && now - state.last >= this.interval) this.origins.delete(origin);
    }
    this.sweepAt = Math.max(RATE_DEFAULTS.sweepAt, this.origins.size * 2);
  }
}

/**
 * Dispatches each request through `inner` once its origin has a token. It owns nothing: closing it
 * leaves `inner` open (the Fetcher owns its Agents).
 *
 * @example
 * const rated = new RatedDispatcher(agent, new OriginRate(5));
 */
export class RatedDispatcher extends WrappedDispatcher {
  constructor(
    private readonly inner: Dispatcher,
    private readonly rate: OriginRate,
    /** The item's cancel signal: a request cancelled while it waits is never sent. */
    private readonly signal?: AbortSignal,
  ) {
    super();
  }

  protected owned(): Dispatcher[] {
    return [];
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.rate.schedule(
      String(options.origin ?? ''),
      () => this.inner.dispatch(options, handler),
      this.signal,
      () => failRequest(handler, new Error('cancelled while waiting for its turn (ratePerHost)')),
    );
    return true;
  }
}
