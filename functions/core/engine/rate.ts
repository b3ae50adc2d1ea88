/**
 * The job option `ratePerHost`: at most N requests per second started per origin, per worker. A
 * token bucket per origin (kept as the time its next token is due, so an origin costs one number);
 * a request that finds the bucket empty waits for its token before it is dispatched. The wait
 * counts as queue time (`queuedMs`), not toward the attempt's deadline. Origins whose bucket is full
 * again are dropped, so memory is bounded by the origins used within the last few intervals, not
 * by every host a long crawl has seen. Redirect hops and retries are requests like any other.
 */
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { WrappedDispatcher } from './wrapped-dispatcher.ts';

/** Rate limiter defaults, stated once. */
export const RATE_DEFAULTS = {
  /**
   * Tokens a bucket holds: 1 means no bursts, requests to an origin start at least 1/N s apart
   * (10 requests at 5/s take 1.8 s), which is what a rate asked for politeness means.
   */
  burst: 1,
  /** The origin table is swept for full buckets when it grows past this (and twice its last size). */
  sweepAt: 1024,
} as const;

/**
 * Per-origin token buckets for one rate.
 *
 * @example
 * const rate = new OriginRate(5);
 * rate.reserve('https://example.com'); // 0: go now
 * rate.reserve('https://example.com'); // 200: wait 200 ms
 */
export class OriginRate {
  /** Milliseconds between tokens. */
  readonly interval: number;
  /** Per origin, when its bucket is full again (the theoretical arrival time of GCRA). */
  private readonly due = new Map<string, number>();
  private sweepAt: number = RATE_DEFAULTS.sweepAt;

  constructor(
    readonly perSecond: number,
    private readonly burst: number = RATE_DEFAULTS.burst,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) throw new RangeError(`rate must be a positive number, got ${perSecond}`);
    this.interval = 1000 / perSecond;
  }

  /** Origins tracked now (those whose bucket is not known to be full). */
  get size(): number {
    return this.due.size;
  }

  /** Takes the origin's next token: how many milliseconds to wait before the request may start. */
  reserve(origin: string): number {
    const now = this.now();
    const due = Math.max(now, this.due.get(origin) ?? now);
    const start = Math.max(now, due - (this.burst - 1) * this.interval);
    this.due.set(origin, due + this.interval);
    if (this.due.size > this.sweepAt) this.sweep(now);
    return start - now;
  }

  /** Drops origins whose bucket has refilled: they would start from a full bucket anyway. */
  private sweep(now: number): void {
    for (const [origin, due] of this.due) if (due <= now) this.due.delete(origin);
    this.sweepAt = Math.max(RATE_DEFAULTS.sweepAt, this.due.size * 2);
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
  ) {
    super();
  }

  protected owned(): Dispatcher[] {
    return [];
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const wait = this.rate.reserve(String(options.origin ?? ''));
    if (wait <= 0) return this.inner.dispatch(options, handler);
    setTimeout(() => this.inner.dispatch(options, handler), wait);
    return true;
  }
}
