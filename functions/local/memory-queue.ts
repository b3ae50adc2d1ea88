/**
 * The embedded Queue: in-process, with SQS's semantics so the worker meets locally what it meets on
 * AWS: at-least-once delivery, a visibility timeout after which an unacknowledged message comes
 * back (a worker that died mid-chunk), a receive count, and a dead-letter hook once a message has
 * been received `maxReceiveCount` times without being deleted.
 */
import { randomUUID } from 'node:crypto';
import { QUEUE_MAX_DELAY_MS, type Queue, type ReceivedMessage, type SendOptions } from '../core/ports.ts';

/** Queue defaults, stated once. */
export const MEMORY_QUEUE_DEFAULTS = {
  visibilityTimeoutMs: 120_000,
  maxReceiveCount: 3,
} as const;

interface StoredMessage {
  id: string;
  body: string;
  receiveCount: number;
  visibleAt: number;
  receipt: string | null;
}

export interface MemoryQueueOptions {
  visibilityTimeoutMs?: number;
  maxReceiveCount?: number;
  /** Called with a message that was received `maxReceiveCount` times and never deleted. */
  onDeadLetter?: (message: ReceivedMessage) => void | Promise<void>;
  /** Clock, for tests. */
  now?: () => number;
}

export class MemoryQueue implements Queue {
  readonly visibilityTimeoutMs: number;
  readonly maxReceiveCount: number;
  /** In arrival order; a message stays here until deleted or dead-lettered. */
  private readonly messages = new Map<string, StoredMessage>();
  /** Delivered and not yet deleted, keyed by their current receipt. */
  private readonly byReceipt = new Map<string, StoredMessage>();
  private readonly waiters = new Set<() => void>();
  private wakeTimer: NodeJS.Timeout | undefined;
  /** Messages sent with a delay and not yet received (the wake timer must cover them too). */
  private readonly delayed = new Set<{ visibleAt: number }>();
  private readonly onDeadLetter: MemoryQueueOptions['onDeadLetter'];
  private readonly now: () => number;
  /** Messages that went to the dead-letter hook, for inspection. */
  readonly deadLetters: ReceivedMessage[] = [];

  constructor(options: MemoryQueueOptions = {}) {
    this.visibilityTimeoutMs = options.visibilityTimeoutMs ?? MEMORY_QUEUE_DEFAULTS.visibilityTimeoutMs;
    this.maxReceiveCount = options.maxReceiveCount ?? MEMORY_QUEUE_DEFAULTS.maxReceiveCount;
    this.onDeadLetter = options.onDeadLetter;
    this.now = options.now ?? Date.now;
  }

  /** Messages not yet deleted (visible or in flight), like ApproximateNumberOfMessages + NotVisible. */
  get size(): number {
    return this.messages.size;
  }

  async send(bodies: string[], { delayMs = 0 }: SendOptions = {}): Promise<void> {
    const visibleAt = delayMs > 0 ? this.now() + Math.min(delayMs, QUEUE_MAX_DELAY_MS) : 0;
    for (const body of bodies) {
      const id = randomUUID();
      const message = { id, body, receiveCount: 0, visibleAt, receipt: null };
      this.messages.set(id, message);
      if (visibleAt > 0) this.delayed.add(message);
    }
    this.wake();
    if (visibleAt > 0) this.scheduleWake();
  }

  async receive({ max, waitMs = 0, signal }: { max: number; waitMs?: number; signal?: AbortSignal }): Promise<ReceivedMessage[]> {
    const deadline = this.now() + waitMs;
    for (;;) {
      const got = await this.take(max);
      if (got.length > 0 || this.now() >= deadline || signal?.aborted) return got;
      await this.waitForChange(deadline - this.now(), signal);
    }
  }

  private async take(max: number): Promise<ReceivedMessage[]> {
    const now = this.now();
    const out: ReceivedMessage[] = [];
    for (const message of this.messages.values()) {
      if (out.length >= max) break;
      if (message.visibleAt > now) continue;
      if (message.receiveCount >= this.maxReceiveCount) {
        // SQS moves a message to the dead-letter queue when it would exceed maxReceiveCount.
        this.messages.delete(message.id);
        if (message.receipt) this.byReceipt.delete(message.receipt);
        const dead = { id: message.id, body: message.body, receipt: '', receiveCount: message.receiveCount };
        this.deadLetters.push(dead);
        await this.onDeadLetter?.(dead);
        continue;
      }
      if (message.receipt) this.byReceipt.delete(message.receipt);
      this.delayed.delete(message);
      message.receiveCount++;
      message.receipt = randomUUID();
      message.visibleAt = now + this.visibilityTimeoutMs;
      this.byReceipt.set(message.receipt, message);
      out.push({ id: message.id, body: message.body, receipt: message.receipt, receiveCount: message.receiveCount });
    }
    if (out.length > 0) this.scheduleWake();
    return out;
  }

  async delete(receipt: string): Promise<void> {
    const message = this.byReceipt.get(receipt);
    if (!message) return;
    this.byReceipt.delete(receipt);
    this.messages.delete(message.id);
  }

  async changeVisibility(receipt: string, ms: number): Promise<void> {
    const message = this.byReceipt.get(receipt);
    if (!message) return;
    message.visibleAt = this.now() + ms;
    if (ms === 0) this.wake();
    else this.scheduleWake();
  }

  /** Wakes receivers when the earliest in-flight message becomes visible again. */
  private scheduleWake(): void {
    let earliest = Infinity;
    const now = this.now();
    for (const m of this.byReceipt.values()) if (m.visibleAt > now && m.visibleAt < earliest) earliest = m.visibleAt;
    for (const m of this.delayed) if (m.visibleAt > now && m.visibleAt < earliest) earliest = m.visibleAt;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (earliest === Infinity) return;
    this.wakeTimer = setTimeout(() => this.wake(), earliest - now + 1);
    this.wakeTimer.unref();
  }

  private wake(): void {
    for (const waiter of this.waiters) waiter();
    this.waiters.clear();
  }

  private waitForChange(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }
}
