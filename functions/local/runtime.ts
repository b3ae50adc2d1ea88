/**
 * The embedded runtime: the whole pipeline on one machine with nothing else installed. A folder
 * store, an in-process queue and a worker loop around the shared message handler, in this thread or
 * in worker threads (one per core); `fanout fetch` and `fanout serve` are built on it. The store is
 * the truth: the ledger (job totals, in this thread) is rebuilt from the chunk summaries once per
 * job, and after a crash {@link EmbeddedRuntime.recover} re-enqueues every chunk that has no summary
 * yet and every callback still pending in its outbox.
 */
import { EventEmitter } from 'node:events';
import { callbackMessage, readCallbackOutbox } from '../core/callback.ts';
import { CancelRegistry, cancelJob } from '../core/cancel.ts';
import type { Counts } from '../core/counts.ts';
import { maxSocketsFromEnv } from '../core/engine/agent.ts';
import { Fetcher } from '../core/engine/fetcher.ts';
import type { AddressGuard } from '../core/engine/guard.ts';
import { finishJob } from '../core/finish.ts';
import type { ProxyRoutes } from '../core/engine/proxy.ts';
import type { OpenedInput } from '../core/input.ts';
import { loadJob, type JobMeta } from '../core/job.ts';
import { JOBS_PREFIX, isJobId, layout } from '../core/layout.ts';
import { MemoryLedger, bindLedger, summaryLoader } from '../core/ledger.ts';
import { handleMessage, type MessageDeps, type MessageResult } from '../core/messages.ts';
import { enqueueChunks, planJob } from '../core/plan.ts';
import type { ObjectStore, ReceivedMessage } from '../core/ports.ts';
import type { FetchRecord } from '../core/record.ts';
import { isStoreFull } from '../core/store-errors.ts';
import { readManifest, type Manifest } from '../core/status.ts';
import { countChunk } from '../core/worker.ts';
import { LocalStore } from './local-store.ts';
import { MemoryQueue } from './memory-queue.ts';
import { localMaxSockets } from './descriptors.ts';
import { WorkerThread, threadBundle, type ThreadConfig } from './threads.ts';
import { LOOP_DEFAULTS, WorkerLoop } from './worker-loop.ts';

export interface EmbeddedRuntimeOptions {
  dataDir: string;
  /** A store to use instead of the folder (tests wrap one to inject faults). */
  store?: ObjectStore;
  guard: AddressGuard;
  /** Proxies from the environment for jobs without a `proxy` option (`fanout fetch` only). */
  envProxy?: ProxyRoutes | null;
  /** The proxies FANOUT_PROXY_AUTH is sent to (`serve`: the operator's list); undefined: any (`fetch`). */
  proxyAuthFor?: readonly string[];
  maxChunksInFlight?: number;
  visibilityTimeoutMs?: number;
  maxReceiveCount?: number;
  retryDelayMs?: number;
  /** Worker threads instead of the loop in this thread (uses every core; needs the folder store). */
  threads?: number;
  /** Signs completion callbacks (see core/callback.ts). */
  callbackSecret?: string;
  /** Backoff base between callback attempts (tests shorten it). */
  callbackRetryBaseMs?: number;
  /** How often a running chunk keeps its records as a part file (default LOOP_DEFAULTS.partEveryMs). */
  partEveryMs?: number;
}

export interface RuntimeEvents {
  /** Records made since the last event, and how many of them failed. */
  progress: [jobId: string, done: number, failed: number];
  finished: [manifest: Manifest];
  callback: [jobId: string, delivery: FetchRecord];
  error: [error: unknown, context: string];
}

export class EmbeddedRuntime extends EventEmitter<RuntimeEvents> {
  readonly store: ObjectStore;
  readonly queue: MemoryQueue;
  /** The fetcher of the loop in this thread (also sends callbacks). */
  readonly fetcher: Fetcher;
  /** Job totals: finishing a chunk and status cost no store request (core/ledger.ts). */
  readonly ledger: MemoryLedger;
  private readonly deps: MessageDeps;
  private readonly cancels = new CancelRegistry();
  private readonly waiters = new Map<string, ((manifest: Manifest) => void)[]>();
  private readonly stopController = new AbortController();
  private loop: WorkerLoop | undefined;
  private running: Promise<void> | undefined;
  private threads: WorkerThread[] = [];
  /** Set while worker threads are being started (their code is bundled first). */
  private threadsStarting: Promise<void> | undefined;
  /** Callbacks in flight: stop() waits for them. */
  private readonly active = new Set<Promise<unknown>>();
  private readonly options: EmbeddedRuntimeOptions;

  constructor(options: EmbeddedRuntimeOptions) {
    super();
    this.store = options.store ?? new LocalStore(options.dataDir);
    this.fetcher = new Fetcher(options.guard, undefined, {
      envProxy: options.envProxy,
      proxyAuthFor: options.proxyAuthFor,
      maxSockets: maxSocketsFromEnv(process.env, localMaxSockets(1)),
    });
    this.options = options;
    // Status and cancel called with this store (the API, the CLI) use this ledger too.
    this.ledger = bindLedger(this.store, new MemoryLedger(summaryLoader(this.store))) as MemoryLedger;
    this.queue = new MemoryQueue({
      visibilityTimeoutMs: options.visibilityTimeoutMs,
      maxReceiveCount: options.maxReceiveCount,
      onDeadLetter: (message) => this.deadLetter(message),
    });
    this.deps = {
      store: this.store,
      fetcher: this.fetcher,
      ledger: this.ledger,
      queue: this.queue,
      onRecord: (jobId, record) => this.emit('progress', jobId, 1, record.ok ? 0 : 1),
      onJobFinished: (manifest) => this.finish(manifest),
      cancelSignal: (jobId) => this.cancels.signal(jobId),
      callbackSecret: async () => options.callbackSecret,
      callbackRetryBaseMs: options.callbackRetryBaseMs,
      partEveryMs: options.partEveryMs ?? LOOP_DEFAULTS.partEveryMs,
    };
  }

  /**
   * A worker thread finished a chunk: this thread counts it, and finishes the job after the last.
   * The thread has acknowledged the message already, so a failure here (a full disk while writing
   * the manifest) is retried from here, with backoff.
   */
  private async threadChunkDone(jobId: string, chunk: number, counts: Counts, lost: boolean, tries = 0): Promise<void> {
    try {
      const job = await loadJob(this.store, jobId);
      await countChunk(this.deps, job, chunk, counts, { lost });
    } catch (error) {
      this.emit('error', error, `job ${jobId} chunk ${chunk}`);
      // A full disk passes; anything else gets a few tries (the job resumes at the next start).
      if (this.stopController.signal.aborted || (!isStoreFull(error) && tries >= LOOP_DEFAULTS.countRetries)) return;
      const delay = Math.min(LOOP_DEFAULTS.storeFullMaxDelayMs, (this.options.retryDelayMs ?? LOOP_DEFAULTS.retryDelayMs) * 2 ** tries);
      setTimeout(() => void this.threadChunkDone(jobId, chunk, counts, lost, tries + 1), delay).unref();
    }
  }

  /** What a handled message did, as events. */
  private onResult(result: MessageResult): void {
    const record = result.delivery?.record;
    if (record && result.jobId) this.emit('callback', result.jobId, record);
    if (result.outcome === 'abandoned') this.emit('error', result.error, `dead letter of job ${result.jobId} given up`);
  }

  /**
   * Plans a job from a validated input and enqueues its chunks.
   *
   * @throws {InputError | OptionsError} with nothing written.
   */
  async submit(input: OpenedInput, options: Record<string, unknown> = {}, source?: string): Promise<JobMeta> {
    const job = await planJob(this.store, this.queue, { input, options, source, enqueue: false });
    this.ledger.begin(job.jobId);
    await enqueueChunks(this.queue, job);
    return job;
  }

  /** Starts the worker loops, or `threads` worker threads (default: the option given at construction). */
  start(threads = this.options.threads ?? 0): void {
    if (this.running || this.threadsStarting) return;
    if (threads > 0) {
      if (!(this.store instanceof LocalStore)) throw new Error('worker threads need the folder store');
      const config: ThreadConfig = {
        dataDir: this.store.root,
        guard: this.fetcher.guard.config,
        envProxy: this.fetcher.envProxy,
        proxyAuthFor: this.options.proxyAuthFor,
        maxReceiveCount: this.queue.maxReceiveCount,
        visibilityTimeoutMs: this.queue.visibilityTimeoutMs,
        maxChunksInFlight: this.options.maxChunksInFlight,
        retryDelayMs: this.options.retryDelayMs,
        callbackSecret: this.options.callbackSecret,
        callbackRetryBaseMs: this.options.callbackRetryBaseMs,
        partEveryMs: this.deps.partEveryMs,
        // The threads share the process's descriptors (FANOUT_MAX_SOCKETS, when set, is each one's).
        maxSockets: maxSocketsFromEnv(process.env, localMaxSockets(threads)),
      };
      const handlers = {
        onProgress: (jobId: string, done: number, failed: number) => this.emit('progress', jobId, done, failed),
        onChunkDone: (jobId: string, chunk: number, counts: Counts, lost: boolean) => void this.threadChunkDone(jobId, chunk, counts, lost),
        onCallback: (jobId: string, record: FetchRecord) => this.emit('callback', jobId, record),
        onError: (error: Error, context: string) => this.emit('error', error, context),
      };
      this.threadsStarting = threadBundle().then(
        (script) => {
          if (this.stopController.signal.aborted) return;
          this.threads = Array.from({ length: threads }, () => new WorkerThread(script, config, this.queue, handlers));
        },
        (error) => {
          this.emit('error', error, 'starting worker threads');
        },
      );
      return;
    }
    this.loop = new WorkerLoop({
      queue: this.queue,
      deps: this.deps,
      signal: this.stopController.signal,
      maxChunksInFlight: this.options.maxChunksInFlight,
      retryDelayMs: this.options.retryDelayMs,
      onResult: (result) => this.onResult(result),
      onError: (error, context) => this.emit('error', error, context),
    });
    this.running = this.loop.run();
  }

  /** The worker threads, when the runtime runs them (tests kill one). */
  get workerThreads(): readonly WorkerThread[] {
    return this.threads;
  }

  /** A message that exhausted its deliveries: the shared handler's dead-letter path (its last try). */
  private async deadLetter(message: ReceivedMessage): Promise<void> {
    try {
      this.onResult(await handleMessage(this.deps, message.body, { receiveCount: 1, maxReceiveCount: 1, deadLetter: true, deliveries: message.receiveCount }));
    } catch (error) {
      this.emit('error', error, `dead-lettered message ${message.body}`);
    }
  }

  private finish(manifest: Manifest): void {
    this.cancels.forget(manifest.jobId);
    this.emit('finished', manifest);
    for (const resolve of this.waiters.get(manifest.jobId) ?? []) resolve(manifest);
    this.waiters.delete(manifest.jobId);
  }

  /** Resolves with the manifest once the job has ended (at once if it already has). */
  async waitForJob(jobId: string): Promise<Manifest> {
    const pending = new Promise<Manifest>((resolve) => {
      const list = this.waiters.get(jobId) ?? [];
      list.push(resolve);
      this.waiters.set(jobId, list);
    });
    const existing = await readManifest(this.store, jobId);
    if (existing) return existing;
    return pending;
  }

  /**
   * Cancels a job: in-flight requests are aborted, chunks not yet fetched get `cancelled` records.
   *
   * @returns false when the job had already ended.
   */
  async cancel(jobId: string): Promise<boolean> {
    const { cancelled } = await cancelJob(this.store, jobId, this.deps);
    if (cancelled) {
      this.cancels.cancel(jobId);
      for (const thread of this.threads) thread.cancel(jobId);
    }
    return cancelled;
  }

  /**
   * Re-enqueues the unfinished chunks of every job without a manifest, and the callbacks of finished
   * jobs still pending in their outbox: the embedded queue lives in memory, the store does not, so
   * this is how a restarted process resumes.
   *
   * @returns the ids of the jobs resumed.
   */
  async recover(): Promise<string[]> {
    const resumed: string[] = [];
    for (const prefix of await this.store.listPrefixes(JOBS_PREFIX)) {
      const jobId = prefix.slice(JOBS_PREFIX.length, -1);
      if (!isJobId(jobId) || !(await this.store.exists(layout.job(jobId)))) continue;
      if (await this.store.exists(layout.manifest(jobId))) {
        const outbox = await readCallbackOutbox(this.store, jobId);
        if (outbox?.state === 'pending') await this.queue.send([callbackMessage(jobId)]);
        continue;
      }
      if (await this.resume(jobId)) resumed.push(jobId);
    }
    return resumed;
  }

  /**
   * Re-enqueues the chunks of one job that have no summary yet (the ledger is rebuilt from the
   * summaries here, once); finishes the job if none is left.
   */
  async resume(jobId: string): Promise<boolean> {
    const job = await loadJob(this.store, jobId);
    const done = await this.ledger.doneChunks(jobId);
    const missing = Array.from({ length: job.chunks }, (_, i) => i).filter((c) => !done.has(c));
    if (missing.length === 0) {
      await finishJob(this.deps, job, 'recover');
      return false;
    }
    await enqueueChunks(this.queue, job, missing);
    return true;
  }

  /** Stops the loops after the chunks in hand are done, and closes the connection pools. */
  async stop(): Promise<void> {
    this.stopController.abort();
    await this.threadsStarting;
    await this.running;
    await Promise.all([this.loop?.drain(), ...this.threads.map((thread) => thread.stop())]);
    await Promise.allSettled(this.active);
    this.running = undefined;
    this.loop = undefined;
    this.threads = [];
    this.threadsStarting = undefined;
    await this.fetcher.close();
  }
}
