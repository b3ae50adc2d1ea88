/**
 * A worker loop: receives messages from a queue and hands each to the shared message handler
 * (core/messages.ts), keeping a few in flight (more while no request waits for a concurrency slot),
 * acknowledging each when handled and making it visible again soon when it failed. Runs in the main
 * thread or in a worker thread (thread-worker.ts) against a queue proxied to the main thread.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { handleMessage, type MessageDeps, type MessageResult } from '../core/messages.ts';
import type { Queue, ReceivedMessage } from '../core/ports.ts';

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
} as const;

export interface WorkerLoopOptions {
  queue: Queue;
  deps: MessageDeps;
  /** Called with what each handled message did (the runtime reports callbacks from it). */
  onResult?(result: MessageResult): void;
  signal: AbortSignal;
  maxChunksInFlight?: number;
  retryDelayMs?: number;
  onError(error: unknown, context: string): void;
}

export class WorkerLoop {
  /** Chunks in progress. */
  readonly active = new Set<Promise<unknown>>();

  constructor(private readonly options: WorkerLoopOptions) {}

  /** Runs until the signal aborts; the chunks in hand then finish (see {@link drain}). */
  async run(): Promise<void> {
    const { queue, deps, signal } = this.options;
    const max = this.options.maxChunksInFlight ?? LOOP_DEFAULTS.maxChunksInFlight;
    const { minChunksInFlight } = LOOP_DEFAULTS;
    while (!signal.aborted) {
      const active = this.active.size;
      const idle = active < max && deps.fetcher.waiting === 0;
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
  }

  /** One delivery: process, then acknowledge; on failure, make it visible again soon. */
  private async handle(message: ReceivedMessage): Promise<void> {
    const { queue, deps } = this.options;
    // Heartbeat: keep the message hidden while the chunk is fetched, as a long-running SQS consumer does.
    const heartbeat = setInterval(
      () => void queue.changeVisibility(message.receipt, queue.visibilityTimeoutMs).catch(() => {}),
      Math.max(1_000, queue.visibilityTimeoutMs / 3),
    );
    heartbeat.unref();
    try {
      const result = await handleMessage(deps, message.body, { receiveCount: message.receiveCount, maxReceiveCount: queue.maxReceiveCount });
      await queue.delete(message.receipt);
      this.options.onResult?.(result);
    } catch (error) {
      this.options.onError(error, `message ${message.body} (delivery ${message.receiveCount})`);
      await queue.changeVisibility(message.receipt, this.options.retryDelayMs ?? LOOP_DEFAULTS.retryDelayMs).catch(() => {});
    } finally {
      clearInterval(heartbeat);
    }
  }
}
