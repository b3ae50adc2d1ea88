/**
 * A worker loop: receives messages from a queue and hands each to the shared message handler
 * (core/messages.ts), keeping a few in flight (more while no request waits for a concurrency slot),
 * acknowledging each when handled and making it visible again soon when it failed. Runs in the main
 * thread or in a worker thread (thread-worker.ts) against a queue proxied to the main thread.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { handleMessage, type MessageDeps, type MessageResult } from '../core/messages.ts';
import type { Queue, ReceivedMessage } from '../core/ports.ts';
import { isStoreFull } from '../core/store-errors.ts';
import { BodyBudget } from './body-budget.ts';

/** Loop defaults, stated once. */
export const LOOP_DEFAULTS = {
  /** Chunks fetched at once, at least: one chunk's tail overlaps the next one's start. */
  minChunksInFlight: 2,
  /**
   * At most. Past the minimum, another chunk is taken only while no request waits for a
   * concurrency slot, so chunks held up by one slow URL do not leave the connections idle.
   */
  maxChunksInFlight: 16,
  /** Delay before a failed delivery is retried (SQS would wait for the visibility timeout). */
  retryDelayMs: 1_000,
  /** Long-poll wait of a receive. */
  receiveWaitMs: 1_000,
  /** Longest wait before a message that met a full store is tried again. */
  storeFullMaxDelayMs: 30_000,
  /**
   * A chunk's records are kept as a part file this often while it runs, so restarts that come
   * faster than one chunk still make progress (a killed delivery refetches at most this much).
   */
  partEveryMs: 5_000,
  /** Tries the main thread gives counting a thread's chunk when the failure is not a full store. */
  countRetries: 5,
} as const;

export interface WorkerLoopOptions {
  queue: Queue;
  deps: MessageDeps;
  /** Called with what each handled message did (the runtime reports callbacks from it). */
  onResult?(result: MessageResult): void;
  signal: AbortSignal;
  maxChunksInFlight?: number;
  retryDelayMs?: number;
  /** Body bytes this worker may hold over all its jobs (default BODY_BUDGET_DEFAULTS). */
  maxHeldBodyBytes?: number;
  onError(error: unknown, context: string): void;
}

export class WorkerLoop {
  /** Chunks in progress. */
  readonly active = new Set<Promise<unknown>>();
  /** Messages that met a full store, waiting to be sent again: body -> tries so far. */
  private readonly fullTries = new Map<string, number>();
  private readonly resends = new Map<NodeJS.Timeout, string>();
  /** Chunks of different jobs start only while their bodies fit this worker's budget. */
  readonly bodyBudget: BodyBudget;
  private readonly deps: MessageDeps;
  /** When a wait for space was last reported (see the constructor). */
  private spaceReportedAt = -Infinity;

  constructor(private readonly options: WorkerLoopOptions) {
    this.bodyBudget = new BodyBudget(options.deps.store, options.maxHeldBodyBytes);
    // Records a delivery holds when the store is full are written again after the same backoff a
    // message that met a full store gets (reported alike); a stop gives up the wait.
    this.deps = {
      waitForSpace: async (error, tries) => {
        // Said once a while, not by every waiting chunk at every try (a full disk lasts).
        const now = Date.now();
        if (now - this.spaceReportedAt >= LOOP_DEFAULTS.storeFullMaxDelayMs) {
          this.spaceReportedAt = now;
          options.onError(error, `waiting for space to write records already fetched (tried again with a backoff; said again in ${LOOP_DEFAULTS.storeFullMaxDelayMs / 1000} s if still full)`);
        }
        await sleep(this.spaceDelay(tries), undefined, { signal: options.signal });
      },
      ...options.deps,
    };
  }

  /** The backoff before the `tries`-th try after a full store. */
  private spaceDelay(tries: number): number {
    return Math.min(LOOP_DEFAULTS.storeFullMaxDelayMs, (this.options.retryDelayMs ?? LOOP_DEFAULTS.retryDelayMs) * 2 ** (tries - 1));
  }

  /** Runs until the signal aborts; the chunks in hand then finish (see {@link drain}). */
  async run(): Promise<void> {
    const { queue, deps, signal } = this.options;
    const max = this.options.maxChunksInFlight ?? LOOP_DEFAULTS.maxChunksInFlight;
    const { minChunksInFlight } = LOOP_DEFAULTS;
    while (!signal.aborted) {
      const active = this.active.size;
      const idle = active < max && deps.fetcher.waiting === 0 && this.bodyBudget.waiting === 0;
      if (active >= minChunksInFlight && !idle) {
        await Promise.race([...this.active, sleep(50)]);
        continue;
      }
      const messages = await queue.receive({ max: Math.max(1, minChunksInFlight - active), waitMs: LOOP_DEFAULTS.receiveWaitMs, signal });
      for (const message of messages) {
        const task = this.handle(message).finally(() => this.active.delete(task));
        this.active.add(task);
      }
    }
  }

  async drain(): Promise<void> {
    await Promise.allSettled(this.active);
    // Hand back what waits for space, so nothing is held only in a timer.
    const waiting = [...this.resends];
    this.resends.clear();
    for (const [timer] of waiting) clearTimeout(timer);
    if (waiting.length > 0) await this.options.queue.send(waiting.map(([, body]) => body)).catch(() => {});
  }

  /**
   * A full store is not the message's fault: acknowledge this delivery and send the message again
   * after a backoff, with a fresh receive count, so it never reaches the dead-letter path (where its
   * fetched records would become chunk_failed). It resumes by itself when space returns.
   */
  private async retryWhenSpace(message: ReceivedMessage): Promise<void> {
    const { queue } = this.options;
    const tries = (this.fullTries.get(message.body) ?? 0) + 1;
    this.fullTries.set(message.body, tries);
    const delay = this.spaceDelay(tries);
    const timer = setTimeout(() => {
      this.resends.delete(timer);
      void queue.send([message.body]).catch((error) => this.options.onError(error, `re-sending ${message.body}`));
    }, delay);
    timer.unref();
    this.resends.set(timer, message.body);
    await queue.delete(message.receipt);
  }

  /** One delivery: process, then acknowledge; on failure, make it visible again soon. */
  private async handle(message: ReceivedMessage): Promise<void> {
    const { queue } = this.options;
    const deps = this.deps;
    // Heartbeat: keep the message hidden while the chunk is fetched, as a long-running SQS consumer does.
    const heartbeat = setInterval(
      () => void queue.changeVisibility(message.receipt, queue.visibilityTimeoutMs).catch(() => {}),
      Math.max(1_000, queue.visibilityTimeoutMs / 3),
    );
    heartbeat.unref();
    let release = () => {};
    try {
      release = await this.bodyBudget.admit(message.body);
      const result = await handleMessage(deps, message.body, { receiveCount: message.receiveCount, maxReceiveCount: queue.maxReceiveCount });
      await queue.delete(message.receipt);
      this.fullTries.delete(message.body);
      this.options.onResult?.(result);
    } catch (error) {
      this.options.onError(error, `message ${message.body} (delivery ${message.receiveCount})`);
      if (isStoreFull(error)) return await this.retryWhenSpace(message).catch(() => {});
      await queue.changeVisibility(message.receipt, this.options.retryDelayMs ?? LOOP_DEFAULTS.retryDelayMs).catch(() => {});
    } finally {
      release();
      clearInterval(heartbeat);
    }
  }
}
