/**
 * Stopping a worker thread must not wait for its queue's long poll: a thread idle in a receive on an
 * empty queue used to hold `fanout fetch` for up to a poll (1 s) after its job had ended.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { Queue, ReceivedMessage } from '../functions/core/ports.ts';
import { WorkerThread, profilerFlags, threadBundle } from '../functions/local/threads.ts';
import { tempDir } from './support/tmp.ts';

/** An empty queue whose receive answers only when its signal aborts: a stop that ignored it would hang. */
class EndlessPoll implements Queue {
  readonly maxReceiveCount = 3;
  readonly visibilityTimeoutMs = 60_000;
  receives = 0;
  async send(): Promise<void> {}
  async delete(): Promise<void> {}
  async changeVisibility(): Promise<void> {}
  receive({ signal }: { max: number; waitMs?: number; signal?: AbortSignal }): Promise<ReceivedMessage[]> {
    this.receives++;
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve([]);
      signal?.addEventListener('abort', () => resolve([]), { once: true });
    });
  }
}

const dataDir = tempDir();
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('WorkerThread.stop', () => {
  it('ends a receive waiting on an empty queue, so the thread exits at once', async () => {
    const queue = new EndlessPoll();
    const errors: string[] = [];
    const thread = new WorkerThread(
      await threadBundle(),
      { dataDir, guard: { blockPrivate: false }, maxReceiveCount: 3, visibilityTimeoutMs: 60_000, maxSockets: 64 },
      queue,
      { onProgress() {}, onChunkDone() {}, onCallback() {}, onError: (error, context) => void errors.push(`${context}: ${error.message}`) },
    );
    // Wait until the thread is parked in a receive.
    while (queue.receives === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    await thread.stop(); // without the abort this never resolves and the test times out
    expect(errors).toEqual([]);
  });
});

describe('profilerFlags', () => {
  it('passes the CPU profiler flags (and the values of those that take one) to the fetching threads, nothing else', () => {
    expect(
      profilerFlags(['--cpu-prof', '--cpu-prof-dir', '/tmp/p', '--cpu-prof-interval', '250', '--max-old-space-size=100', '--cpu-prof-name=x.cpuprofile', '--inspect']),
    ).toEqual(['--cpu-prof', '--cpu-prof-dir', '/tmp/p', '--cpu-prof-interval', '250', '--cpu-prof-name=x.cpuprofile']);
    expect(profilerFlags(['--enable-source-maps'])).toEqual([]);
  });
});
