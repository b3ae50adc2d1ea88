/**
 * A worker's fetching machinery: its Agents (one per perHost, TLS, HTTP/2 and proxy setting, since
 * connection limits, certificate checks, ALPN and routes are Agent options), the socket budget they
 * share (so the worker's open sockets stay under a stated number whatever the host mix), the
 * per-origin rate limits (`ratePerHost`), and the per-job concurrency limits shared by all chunks
 * of a job in this worker.
 */
import { createHash } from 'node:crypto';
import type { Dispatcher } from 'undici';
import type { IndexedItem } from '../input.ts';
import type { JobOptions } from '../options.ts';
import { createAgent, maxSocketsFromEnv, type Lookup } from './agent.ts';
import { fetchItem, type FetchResult } from './fetch-item.ts';
import type { AddressGuard } from './guard.ts';
import { proxyAuthFromEnv, routesForProxy, type ProxyRoutes } from './proxy.ts';
import { OriginRate, RatedDispatcher } from './rate.ts';
import { SocketBudget, type SocketBudgetStats } from './socket-budget.ts';

/** Fetcher defaults, stated once. */
export const FETCHER_DEFAULTS = {
  /**
   * Agents kept at once (one per perHost and TLS setting in use). Jobs with their own `ca` each get
   * one; past this many, the least recently used is closed gracefully (its requests finish).
   */
  maxAgents: 16,
  /** Distinct `ratePerHost` values with their own origin table at once; past this, the least recently used is dropped. */
  maxRates: 16,
} as const;

export interface FetcherOptions {
  /** Open fetch sockets at most, all origins together; default FANOUT_MAX_SOCKETS, else 256. */
  maxSockets?: number;
  /**
   * Proxies from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY: see proxyRoutesFromEnv), for
   * jobs without a `proxy` option. Only `fanout fetch` gives them: in server modes a proxy is a job's
   * explicit choice.
   */
  envProxy?: ProxyRoutes | null;
  /** `user:password` for proxies; default FANOUT_PROXY_AUTH. */
  proxyAuth?: string;
  /**
   * The proxies (origins) that may be sent `proxyAuth`; undefined: any (`fanout fetch`, where the
   * user names the proxies). Server modes give the operator's list (FANOUT_PROXY_AUTH_FOR, see
   * proxyAuthForFromEnv), else any API user could name a proxy of theirs and read the credentials.
   */
  proxyAuthFor?: readonly string[];
}

/**
 * Bytes of finished records a job may hold in this worker while they wait for a slower
 * predecessor (records are written in index order). Shared by the job's chunks.
 */
export class ByteBudget {
  used = 0;
  private waiters: (() => void)[] = [];
  constructor(readonly limit: number) {}
  get available(): boolean {
    return this.used < this.limit;
  }

  /** Chunks waiting for room (see {@link onRelease}). */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Gives bytes back and wakes whoever waits for room (they look again). */
  release(bytes: number): void {
    this.used -= bytes;
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Calls `wake` once, at the next release (the caller looks again then).
   *
   * @example
   * if (!budget.available) budget.onRelease(() => startMore());
   */
  onRelease(wake: () => void): void {
    this.waiters.push(wake);
  }
}

/**
 * A job's concurrency in this worker: `size` requests at once over all its chunks. A free slot goes
 * to the waiting chunk of the lowest rank (its number), so chunks complete in order, while nothing
 * is queued per item: a chunk waits for one slot at a time.
 *
 * @example
 * if (slots.take()) start(); else slots.wait(start, rank); // `start` owns a slot; it calls slots.give() when done
 */
export class Slots {
  private free: number;
  /** Waiting chunks, lowest rank first (a handful: the chunks in flight). */
  private readonly waiters: { rank: number; onSlot: () => void }[] = [];
  constructor(size: number) {
    this.free = size;
  }

  /** Chunks waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a slot if one is free and nobody waits for it. */
  take(): boolean {
    if (this.free === 0 || this.waiters.length > 0) return false;
    this.free--;
    return true;
  }

  /** Calls `onSlot` when a slot is free for it, the slot then taken for it; lower ranks are served first. */
  wait(onSlot: () => void, rank: number): void {
    const waiters = this.waiters;
    const waiter = { rank, onSlot };
    let at = waiters.length;
    waiters.push(waiter);
    // Insertion by rank (no splice: it would make an array per call on the hot path).
    for (; at > 0 && waiters[at - 1]!.rank > rank; at--) waiters[at] = waiters[at - 1]!;
    waiters[at] = waiter;
  }

  /** Gives a slot back: to the first waiter, if any. */
  give(): void {
    const next = this.waiters.shift();
    if (next) next.onSlot();
    else this.free++;
  }
}

interface JobSlot {
  slots: Slots;
  budget: ByteBudget;
  users: number;
}

type AgentSettings = Pick<JobOptions, 'perHost' | 'insecure' | 'ca' | 'http2' | 'proxy'>;

/** The Agent key of a job's options, computed once per options object (a CA may be large to hash). */
const agentKeys = new WeakMap<AgentSettings, string>();
function agentKey(options: AgentSettings): string {
  let key = agentKeys.get(options);
  if (key === undefined) {
    const ca = options.ca ? createHash('sha256').update(options.ca).digest('hex') : '';
    key = `${options.perHost}|${options.insecure ? 'insecure' : ''}|${options.http2 ? 'h2' : ''}|${options.proxy ?? ''}|${ca}`;
    agentKeys.set(options, key);
  }
  return key;
}

export class Fetcher {
  /** Agents by settings, least recently used first. */
  private readonly agents = new Map<string, Dispatcher>();
  /** The key of the last Agent in `agents` (the most recently used). */
  private lastAgentKey: string | undefined;
  /** Agents closed to stay within maxAgents whose requests are still finishing. */
  private readonly retired = new Set<Dispatcher>();
  /** Per-origin token buckets by `ratePerHost` value, least recently used first. */
  private readonly rates = new Map<number, OriginRate>();
  /** Proxies from the environment, for jobs without a `proxy` option (`fanout fetch` only). */
  readonly envProxy: ProxyRoutes | null;
  private readonly proxyAuth: string | undefined;
  private readonly proxyAuthFor: readonly string[] | undefined;
  private readonly slots = new Map<string, JobSlot>();
  private readonly budget: SocketBudget;

  constructor(
    readonly guard: AddressGuard,
    /** The resolver; tests give one that answers without a DNS server. */
    private readonly lookup?: Lookup,
    options: FetcherOptions = {},
  ) {
    this.budget = new SocketBudget(options.maxSockets ?? maxSocketsFromEnv());
    this.envProxy = options.envProxy ?? null;
    this.proxyAuth = options.proxyAuth ?? proxyAuthFromEnv();
    this.proxyAuthFor = options.proxyAuthFor;
  }

  /** The socket budget's counters: its size, sockets open now, the peak, evictions and waits. */
  get sockets(): SocketBudgetStats {
    return this.budget.stats();
  }

  private agentFor(options: AgentSettings): Dispatcher {
    const key = agentKey(options);
    // Most requests in a row go to the same Agent: it is already the most recently used.
    if (key === this.lastAgentKey) return this.agents.get(key)!;
    let agent = this.agents.get(key);
    if (agent) {
      this.agents.delete(key); // most recently used last
    } else {
      const { perHost, insecure, ca, http2 } = options;
      const proxy = options.proxy ? routesForProxy(options.proxy) : this.envProxy;
      // The job's proxy gets the credentials only if the operator listed it (server modes).
      const proxyAuth = !this.proxyAuthFor || (options.proxy && this.proxyAuthFor.includes(new URL(options.proxy).origin)) ? this.proxyAuth : undefined;
      agent = createAgent({ perHost, guard: this.guard, budget: this.budget, lookup: this.lookup, insecure, ca, http2, proxy, proxyAuth });
      if (this.agents.size >= FETCHER_DEFAULTS.maxAgents) {
        const [oldKey, oldest] = this.agents.entries().next().value!;
        this.agents.delete(oldKey);
        this.retired.add(oldest);
        void oldest
          .close()
          .catch(() => {})
          .finally(() => this.retired.delete(oldest));
      }
    }
    this.agents.set(key, agent);
    this.lastAgentKey = key;
    return agent;
  }

  /**
   * The concurrency limit and reorder budget of a job in this worker; call `release` when the
   * chunk ends. Chunks of the same job processed at once share them, so `concurrency` holds per
   * worker and memory stays near 2 x concurrency x maxBodyBytes however many chunks run.
   */
  acquire(jobId: string, options: Pick<JobOptions, 'concurrency' | 'maxBodyBytes'>): Omit<JobSlot, 'users'> & { release: () => void } {
    let slot = this.slots.get(jobId);
    if (!slot) {
      const budget = new ByteBudget(Math.max(options.concurrency * Math.max(options.maxBodyBytes, 64 * 1024), 8 * 1024 * 1024));
      slot = { slots: new Slots(options.concurrency), budget, users: 0 };
      this.slots.set(jobId, slot);
    }
    slot.users++;
    const held = slot;
    return {
      slots: held.slots,
      budget: held.budget,
      release: () => {
        if (--held.users === 0 && this.slots.get(jobId) === held) this.slots.delete(jobId);
      },
    };
  }

  /** Chunks waiting for a concurrency slot or for room, over all jobs: 0 means this worker could take more work. */
  get waiting(): number {
    let n = 0;
    for (const slot of this.slots.values()) n += slot.slots.waiting + slot.budget.waiting;
    return n;
  }

  /** The origin table of a rate, shared by the jobs of that rate in this worker. */
  private rateFor(perSecond: number): OriginRate {
    let rate = this.rates.get(perSecond);
    if (rate) this.rates.delete(perSecond);
    else {
      rate = new OriginRate(perSecond);
      if (this.rates.size >= FETCHER_DEFAULTS.maxRates) this.rates.delete(this.rates.keys().next().value!);
    }
    this.rates.set(perSecond, rate);
    return rate;
  }

  fetch(item: IndexedItem, options: JobOptions, signal?: AbortSignal): Promise<FetchResult> {
    const agent = this.agentFor(options);
    const dispatcher = options.ratePerHost ? new RatedDispatcher(agent, this.rateFor(options.ratePerHost), signal) : agent;
    return fetchItem(item, options, { dispatcher, signal });
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values(), ...this.retired].map((a) => a.destroy()));
    this.agents.clear();
    this.lastAgentKey = undefined;
    this.retired.clear();
  }
}
