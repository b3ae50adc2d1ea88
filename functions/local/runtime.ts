/**
 * The embedded runtime: the whole pipeline on one machine with nothing else installed. A folder
 * store, an in-process queue and worker loops around the shared core; `fanout fetch` and
 * `fanout serve` are built on it. The store is the truth: after a crash, {@link EmbeddedRuntime.recover}
 * re-enqueues every chunk that has no summary yet.
 */
import { EventEmitter, setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { cancelJob } from '../core/cancel.ts';
import { sendCallback } from '../core/callback.ts';
import { Fetcher } from '../core/engine/fetcher.ts';
import type { AddressGuard } from '../core/engine/guard.ts';
import type { OpenedInput } from '../core/input.ts';
import { loadJob, type JobMeta } from '../core/job.ts';
import { JOBS_PREFIX, chunkOfKey, isJobId, layout } from '../core/layout.ts';
import { enqueueChunks, planJob } from '../core/plan.ts';
import type { ObjectStore, ReceivedMessage } from '../core/ports.ts';
import type { FetchRecord } from '../core/record.ts';
import { finalizeIfComplete, readManifest, type Manifest } from '../core/status.ts';
import { parseChunkMessage, processChunk, writeFailedChunk, type WorkerDeps } from '../core/worker.ts';
import { LocalStore } from './local-store.ts';
import { MemoryQueue } from './memory-queue.ts';

/** Runtime defaults, stated once. */
export const RUNTIME_DEFAULTS = {
  /** Chunks fetched at once, at least: one chunk's tail overlaps the next one's start. */
  minChunksInFlight: 2,
  /**
   * At most. Past the minimum, another chunk is taken only while no request waits for a
   * concurrency slot, so chunks held up by one slow URL do not leave the connections idle.
   */
  maxChunksInFlight: 16,
  /** Delay before a failed delivery is retried (SQS would wait for the visibility timeout). */
  retryDelayMs: 1_000,
  /** Long-poll wait of a worker loop. */
  receiveWaitMs: 1_000,
} as const;

export interface EmbeddedRuntimeOptions {
  dataDir: string;
  /** A store to use instead of the folder (tests wrap one to inject faults). */
  store?: ObjectStore;
  guard: AddressGuard;
  maxChunksInFlight?: number;
  visibilityTimeoutMs?: number;
  maxReceiveCount?: number;
  retryDelayMs?: number;
  /** Worker loops, each with its own connection pools and per-job concurrency (default 1). */
  workers?: number;
  /** Signs completion callbacks (see core/callback.ts). */
  callbackSecret?: string;
}

export interface RuntimeEvents {
  record: [jobId: string, record: FetchRecord];
  finished: [manifest: Manifest];
  callback: [jobId: string, delivery: FetchRecord];
  error: [error: unknown, context: string];
}

export class EmbeddedRuntime extends EventEmitter<RuntimeEvents> {
  readonly store: ObjectStore;
  readonly queue: MemoryQueue;
  /** One per worker loop. */
  readonly fetchers: Fetcher[];
  private readonly workerDeps: WorkerDeps[];
  private readonly callbackSecret: string | undefined;
  private readonly cancels = new Map<string, AbortController>();
  /** Chunks known done per job: lets a worker skip the listing completion check until the last one. */
  private readonly doneChunks = new Map<string, Set<number>>();
  private readonly waiters = new Map<string, ((manifest: Manifest) => void)[]>();
  private readonly stopController = new AbortController();
  private loops: Promise<void>[] = [];
  /** Every chunk and callback in progress, over all workers: stop() waits for them. */
  private readonly active = new Set<Promise<unknown>>();
  private readonly maxChunksInFlight: number;
  private readonly retryDelayMs: number;

  constructor(options: EmbeddedRuntimeOptions) {
    super();
    this.store = options.store ?? new LocalStore(options.dataDir);
    this.fetchers = Array.from({ length: Math.max(1, options.workers ?? 1) }, () => new Fetcher(options.guard));
    this.callbackSecret = options.callbackSecret;
    this.maxChunksInFlight = options.maxChunksInFlight ?? RUNTIME_DEFAULTS.maxChunksInFlight;
    this.retryDelayMs = options.retryDelayMs ?? RUNTIME_DEFAULTS.retryDelayMs;
    const mayBeComplete = (job: JobMeta, chunk: number) => {
      const done = this.doneChunks.get(job.jobId) ?? new Set<number>();
      done.add(chunk);
      this.doneChunks.set(job.jobId, done);
      return done.size >= job.chunks;
    };
    this.workerDeps = this.fetchers.map((fetcher) => ({
      store: this.store,
      fetcher,
      onRecord: (jobId, record) => this.emit('record', jobId, record),
      onJobFinished: (manifest) => this.finish(manifest),
      cancelSignal: (jobId) => this.cancelController(jobId).signal,
      mayBeComplete,
    }));
    this.queue = new MemoryQueue({
      visibilityTimeoutMs: options.visibilityTimeoutMs,
      maxReceiveCount: options.maxReceiveCount,
      onDeadLetter: (message) => this.deadLetter(message),
    });
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

  /** The first worker's fetcher (tests drive chunks through it directly). */
  get fetcher(): Fetcher {
    return this.fetchers[0]!;
  }

  /** Starts the worker loops. */
  start(): void {
    if (this.loops.length === 0) this.loops = this.workerDeps.map((deps) => this.loop(deps));
  }

  private async loop(deps: WorkerDeps): Promise<void> {
    const mine = new Set<Promise<unknown>>();
    const signal = this.stopController.signal;
    const { minChunksInFlight } = RUNTIME_DEFAULTS;
    while (!signal.aborted) {
      const active = mine.size;
      const idle = active < this.maxChunksInFlight && deps.fetcher.waiting === 0;
      if (active >= minChunksInFlight && !idle) {
        await Promise.race([...mine, sleep(50)]);
        continue;
      }
      const messages = await this.queue.receive({
        max: Math.max(1, minChunksInFlight - active),
        waitMs: RUNTIME_DEFAULTS.receiveWaitMs,
        signal,
      });
      for (const message of messages) {
        const task = this.handle(message, deps).finally(() => {
          mine.delete(task);
          this.active.delete(task);
        });
        mine.add(task);
        this.active.add(task);
      }
    }
  }

  /** One delivery: process, then acknowledge; on failure, make it visible again soon. */
  private async handle(message: ReceivedMessage, deps: WorkerDeps): Promise<void> {
    // Heartbeat: keep the message hidden while the chunk is being fetched, as a long-running SQS consumer does.
    const heartbeat = setInterval(
      () => void this.queue.changeVisibility(message.receipt, this.queue.visibilityTimeoutMs),
      Math.max(1_000, this.queue.visibilityTimeoutMs / 3),
    );
    heartbeat.unref();
    try {
      await processChunk(deps, message.body, { finalReceive: message.receiveCount >= this.queue.maxReceiveCount });
      await this.queue.delete(message.receipt);
    } catch (error) {
      this.emit('error', error, `chunk message ${message.body} (delivery ${message.receiveCount})`);
      await this.queue.changeVisibility(message.receipt, this.retryDelayMs);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** A message that exhausted its deliveries: its items still get records (`chunk_failed`). */
  private async deadLetter(message: ReceivedMessage): Promise<void> {
    try {
      const { jobId, chunk } = parseChunkMessage(message.body);
      const job = await loadJob(this.store, jobId);
      await writeFailedChunk(this.workerDeps[0]!, job, chunk, `chunk ${chunk} failed on all ${message.receiveCount} deliveries`);
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
    if (cancelled) this.cancelController(jobId).abort(new Error('cancelled'));
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
    await Promise.all(this.loops);
    await Promise.allSettled(this.active);
    this.loops = [];
    await Promise.all(this.fetchers.map((f) => f.close()));
  }
}
