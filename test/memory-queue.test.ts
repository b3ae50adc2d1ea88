import { describe, expect, it } from 'vitest';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import type { ReceivedMessage } from '../functions/core/ports.ts';

describe('MemoryQueue (SQS semantics)', () => {
  it('delivers in order, hides delivered messages, deletes by receipt', async () => {
    const q = new MemoryQueue({ visibilityTimeoutMs: 60_000 });
    await q.send(['a', 'b', 'c']);
    const first = await q.receive({ max: 2 });
    expect(first.map((m) => m.body)).toEqual(['a', 'b']);
    expect(first.every((m) => m.receiveCount === 1)).toBe(true);
    expect((await q.receive({ max: 10 })).map((m) => m.body)).toEqual(['c']);
    expect(await q.receive({ max: 10 })).toEqual([]);
    for (const m of first) await q.delete(m.receipt);
    expect(q.size).toBe(1);
  });

  it('redelivers a message whose visibility timeout ran out (a worker that died), counting receives', async () => {
    const q = new MemoryQueue({ visibilityTimeoutMs: 50 });
    await q.send(['job']);
    const [first] = await q.receive({ max: 1 });
    const [second] = await q.receive({ max: 1, waitMs: 1_000 });
    expect(second!.id).toBe(first!.id);
    expect(second!.receiveCount).toBe(2);
    // the first delivery's receipt is stale: deleting with it does nothing
    await q.delete(first!.receipt);
    expect(q.size).toBe(1);
    await q.delete(second!.receipt);
    expect(q.size).toBe(0);
  });

  it('long polling wakes up when a message arrives', async () => {
    const q = new MemoryQueue();
    const t0 = Date.now();
    const pending = q.receive({ max: 1, waitMs: 5_000 });
    setTimeout(() => void q.send(['late']), 50);
    expect((await pending).map((m) => m.body)).toEqual(['late']);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it('changeVisibility(0) makes a message visible again at once', async () => {
    const q = new MemoryQueue({ visibilityTimeoutMs: 60_000 });
    await q.send(['x']);
    const [m] = await q.receive({ max: 1 });
    await q.changeVisibility(m!.receipt, 0);
    const [again] = await q.receive({ max: 1 });
    expect(again!.receiveCount).toBe(2);
  });

  it('dead-letters a message after maxReceiveCount receives', async () => {
    const dead: ReceivedMessage[] = [];
    const q = new MemoryQueue({ visibilityTimeoutMs: 10, maxReceiveCount: 2, onDeadLetter: (m) => void dead.push(m) });
    await q.send(['poison']);
    expect((await q.receive({ max: 1 }))[0]!.receiveCount).toBe(1);
    expect((await q.receive({ max: 1, waitMs: 500 }))[0]!.receiveCount).toBe(2);
    expect(await q.receive({ max: 1, waitMs: 100 })).toEqual([]);
    expect(dead.map((m) => [m.body, m.receiveCount])).toEqual([['poison', 2]]);
    expect(q.size).toBe(0);
  });

  it('receive returns early when its signal aborts', async () => {
    const q = new MemoryQueue();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    const t0 = Date.now();
    expect(await q.receive({ max: 1, waitMs: 10_000, signal: controller.signal })).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });
});
