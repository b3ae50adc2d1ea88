/**
 * The embedded runtime: the whole pipeline on one machine with nothing else installed. A folder
 * store, an in-process queue and a worker loop around the shared core, in this thread or in worker
 * threads (one per core); `fanout fetch` and `fanout serve` are built on it. The store is the truth:
 * after a crash, {@link EmbeddedRuntime.recover} re-enqueues every chunk that has no summary yet.
 */
import { EventEmitter, setMaxListeners } from 'node:events';
import { cancelJob } from '../core/cancel.ts';
import { sendCallback } from '../core/callback.ts';
import { Fetcher } from '../core/engine/fetcher.ts';
import type { AddressGuard } from '../core/engine/guard.ts';
import type { ProxyRoutes } from '../core/engine/proxy.ts';
import type { OpenedInput } from '../core/input.ts';
import { loadJob, type JobMeta } from '../core/job.ts';
import { JOBS_PREFIX, chunkOfKey, isJobId, layout } from '../core/layout.ts';
import { enqueueChunks, planJob } from '../core/plan.ts';
import type { ObjectStore, ReceivedMessage } from '../core/ports.ts';
import type { FetchRecord } from '../core/record.ts';
import { finalizeIfComplete, readManifest, type Manifest } from '../core/status.ts';
import { parseChunkMessage, writeFailedChunk, type WorkerDeps } from '../core/worker.ts';
import { LocalStore } from './local-store.ts';
import { MemoryQueue } from './memory-queue.ts';
import { WorkerThread, threadBundle, type ThreadConfig } from './threads.ts';
import { WorkerLoop } from './worker-loop.ts';

export interface EmbeddedRuntimeOptions {
  dataDir: string;
  /** A store to use instead of the folder (tests wrap one to inject faults). */
  store?: ObjectStore;
  guard: AddressGuard;
  /** Proxies from the environment for jobs without a `proxy` option (`fanout fetch` only). */
  envProxy?: ProxyRoutes | null;
  maxChunksInFlight?: number;
  visibilityTimeoutMs?: number;
  maxReceiveCount?: number;
  retryDelayMs?: number;
  /** Worker threads instead of the loop in this thread (uses every core; needs the folder store). */
  threads?: number;
  /** Signs completion callbacks (see core/callback.ts). */
  callbackSecret?: string;
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
  private readonly deps: WorkerDeps;
  private readonly callbackSecret: string | undefined;
  private readonly cancels = new Map<string, AbortController>();
  /** Chunks known done per job: lets a worker skip the listing completion check until the last one. */
  private readonly doneChunks = new Map<string, Set<number>>();
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
    this.fetcher = new Fetcher(options.guard, undefined, { envProxy: options.envProxy });
    this.callbackSecret = options.callbackSecret;
    this.options = options;
    this.deps = {
      store: this.store,
      fetcher: this.fetcher,
      onRecord: (jobId, record) => this.emit('progress', jobId, 1, record.ok ? 0 : 1),
      onJobFinished: (manifest) => this.finish(manifest),
      cancelSignal: (jobId) => this.cancelController(jobId).signal,
      mayBeComplete: (job, chunk) => this.countDone(job, chunk),
    };
    this.queue = new MemoryQueue({
      visibilityTimeoutMs: options.visibilityTimeoutMs,
      maxReceiveCount: options.maxReceiveCount,
      onDeadLetter: (message) => this.deadLetter(message),
    });
  }

  /** Counts a finished chunk; true once every chunk of the job is known done. */
  private countDone(job: JobMeta, chunk: number): boolean {
    const done = this.doneChunks.get(job.jobId) ?? new Set<number>();
    done.add(chunk);
    this.doneChunks.set(job.jobId, done);
    return done.size >= job.chunks;
  }

  /** A worker thread finished a chunk: this thread counts, and writes the manifest after the last. */
  private async threadChunkDone(jobId: string, chunk: number): Promise<void> {
    const job = await loadJob(this.store, jobId);
    if (!this.countDone(job, chunk)) return;
    const manifest = await finalizeIfComplete(this.store, job);
    if (manifest) this.finish(manifest);
  }

  private cancelController(jobId: string): AbortController {
    let controller = this.cancels.get(jobId);
    if (!controller) {
      controller = new AbortController();
      setMaxListeners(0, controller.signal); // one listener per chunk in flight
      this.cancels.set(jobId, controller);
    }
    return controller;
  }

  /**
   * Plans a job from a validated input and enqueues its chunks.
   *
   * @throws {InputError | OptionsError} with nothing written.
   */
  async submit(input: OpenedInput, options: Record<string, unknown> = {}, source?: string): Promise<JobMeta> {
    const job = await planJob(this.store, this.queue, { input, options, source });
    this.doneChunks.set(job.jobId, new Set());
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
        maxReceiveCount: this.queue.maxReceiveCount,
        visibilityTimeoutMs: this.queue.visibilityTimeoutMs,
        maxChunksInFlight: this.options.maxChunksInFlight,
        retryDelayMs: this.options.retryDelayMs,
      };
      const handlers = {
        onProgress: (jobId: string, done: number, failed: number) => this.emit('progress', jobId, done, failed),
        onChunkDone: (jobId: string, chunk: number) =>
          void this.threadChunkDone(jobId, chunk).catch((error) => this.emit('error', error, `job ${jobId}`)),
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
      onError: (error, context) => this.emit('error', error, context),
    });
    this.running = this.loop.run();
  }

  /** The worker threads, when the runtime runs them (tests kill one). */
  get workerThreads(): readonly WorkerThread[] {
    return this.threads;
  }

  /** A message that exhausted its deliveries: its items still get records (`chunk_failed`). */
  private async deadLetter(message: ReceivedMessage): Promise<void> {
    try {
      const { jobId, chunk } = parseChunkMessage(message.body);
      const job = await loadJob(this.store, jobId);
      await writeFailedChunk(this.deps, job, chunk, `chunk ${chunk} failed on all ${message.receiveCount} deliveries`);
    } catch (error) {
      this.emit('error', error, `dead-lettered message ${message.body}`);
    }
  }

  private finish(manifest: Manifest): void {
    this.cancels.delete(manifest.jobId);
    this.doneChunks.delete(manifest.jobId);
    this.emit('finished', manifest);
    const delivery = sendCallback(this.store, this.fetcher, manifest.jobId, this.callbackSecret).then(
      (record) => record && this.emit('callback', manifest.jobId, record),
      (error) => this.emit('error', error, `callback of job ${manifest.jobId}`),
    );
    this.active.add(delivery);
    void delivery.finally(() => this.active.delete(delivery));
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
    const { cancelled, manifest } = await cancelJob(this.store, jobId);
    if (cancelled) {
      this.cancelController(jobId).abort(new Error('cancelled'));
      for (const thread of this.threads) thread.cancel(jobId);
    }
    if (manifest) this.finish(manifest);
    return cancelled;
  }

  /**
   * Re-enqueues the unfinished chunks of every job without a manifest: the embedded queue lives in
   * memory, the store does not, so this is how a restarted process resumes.
   *
   * @returns the ids of the jobs resumed.
   */
  async recover(): Promise<string[]> {
    const resumed: string[] = [];
    for (const prefix of await this.store.listPrefixes(JOBS_PREFIX)) {
      const jobId = prefix.slice(JOBS_PREFIX.length, -1);
      if (!isJobId(jobId) || !(await this.store.exists(layout.job(jobId)))) continue;
      if (await this.store.exists(layout.manifest(jobId))) continue;
      if (await this.resume(jobId)) resumed.push(jobId);
    }
    return resumed;
  }

  /** Re-enqueues the chunks of one job that have no summary yet; finalizes it if none is left. */
  async resume(jobId: string): Promise<boolean> {
    const job = await loadJob(this.store, jobId);
    const done = new Set<number>();
    for await (const key of this.store.list(layout.chunksPrefix(jobId))) done.add(chunkOfKey(key));
    this.doneChunks.set(jobId, done);
    const missing = Array.from({ length: job.chunks }, (_, i) => i).filter((c) => !done.has(c));
    if (missing.length === 0) {
      const manifest = await finalizeIfComplete(this.store, job);
      if (manifest) this.finish(manifest);
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
