// The chunk scheduler (functions/core/in-order.ts): records in index order, items started only
// when a slot is free and the reorder budget has room, nothing queued per waiting item.
import { describe, expect, it } from 'vitest';
import { ByteBudget, Slots } from '../functions/core/engine/fetcher.ts';
import { HANDED_ON, STARTS_PER_TURN, inOrder } from '../functions/core/in-order.ts';
import type { IndexedItem } from '../functions/core/input.ts';
import { failedRecord, makeRecord, type FetchRecord } from '../functions/core/record.ts';

const items = (n: number, from = 0): IndexedItem[] => Array.from({ length: n }, (_, i) => ({ index: from + i, url: `http://a.test/${from + i}` }));
const record = (item: IndexedItem) => failedRecord(item, 'internal', 'test');
const tick = () => new Promise((r) => setImmediate(r));

async function collect(gen: AsyncGenerator<FetchRecord[]>): Promise<number[]> {
  const out: number[] = [];
  for await (const batch of gen) {
    expect(batch.length).toBeGreaterThan(0);
    for (const r of batch) out.push(r.index);
  }
  return out;
}

describe('inOrder', () => {
  it('runs at most `size` items at once, starts an item only when it can run, and yields in index order', async () => {
    const slots = new Slots(4);
    let running = 0;
    let peak = 0;
    let calls = 0;
    let finished = 0;
    const run = async (item: IndexedItem) => {
      calls++;
      // Started only when a slot is free: never more than finished + 4 calls.
      expect(calls).toBeLessThanOrEqual(finished + 4);
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, (item.index * 7) % 5)); // finish out of order
      running--;
      finished++;
      return record(item);
    };
    const got = await collect(inOrder(items(200), run, slots, new ByteBudget(1 << 30)));
    expect(got).toEqual(items(200).map((i) => i.index));
    expect(peak).toBe(4);
    expect(slots.take()).toBe(true); // every slot came back
  });

  it('two chunks of a job share its slots; the lower-numbered chunk is served first, so it completes first', async () => {
    const slots = new Slots(3);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const run = async (item: IndexedItem) => {
      running++;
      peak = Math.max(peak, running);
      order.push(item.index);
      await tick();
      running--;
      return record(item);
    };
    const budget = new ByteBudget(1 << 30);
    const [a, b] = await Promise.all([collect(inOrder(items(30, 100), run, slots, budget, 1)), collect(inOrder(items(30), run, slots, budget, 0))]);
    expect(a).toHaveLength(30);
    expect(b).toHaveLength(30);
    expect(peak).toBe(3);
    // Chunk 1 began first, but once both wait, every freed slot goes to chunk 0 until it has started all its items.
    expect(order.slice(0, 3)).toEqual([100, 101, 102]);
    expect(order.slice(3, 33)).toEqual(items(30).map((i) => i.index));
  });

  it('past the reorder budget only the head starts, so a slow head holds back memory, not the chunk', async () => {
    const slots = new Slots(8);
    const budget = new ByteBudget(512 * 3); // room for 3 finished records (512 each)
    let releaseHead!: () => void;
    const headDone = new Promise<void>((r) => (releaseHead = r));
    const started: number[] = [];
    const run = async (item: IndexedItem) => {
      started.push(item.index);
      if (item.index === 0) await headDone;
      return record(item);
    };
    const gen = collect(inOrder(items(50), run, slots, budget));
    for (let i = 0; i < 20; i++) await tick();
    // 0..7 start at once (8 slots); as 1 and 2 finish there is still room, so 8 and 9 start; once
    // 3 has finished the budget is full and nothing else starts while the head is out.
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(budget.used).toBe(512 * 9);
    expect(budget.waiting).toBe(1); // the chunk waits for room, not a slot per item
    releaseHead();
    expect(await gen).toEqual(items(50).map((i) => i.index));
    expect(budget.used).toBe(0);
  });

  it('throws a failed item when its turn comes, stops at a handed-on item, and gives every slot and byte back', async () => {
    const slots = new Slots(5);
    const budget = new ByteBudget(1 << 30);
    const failing = async (item: IndexedItem) => {
      if (item.index === 7) throw new Error('store down');
      return record(item);
    };
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const batch of inOrder(items(40), failing, slots, budget)) for (const r of batch) seen.push(r.index);
      })(),
    ).rejects.toThrow('store down');
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
    for (let i = 0; i < 10; i++) await tick();
    expect(budget.used).toBe(0);

    const handing = async (item: IndexedItem) => (item.index >= 12 ? HANDED_ON : record(item));
    expect(await collect(inOrder(items(40), handing, slots, budget))).toEqual(items(12).map((i) => i.index));
    for (let i = 0; i < 10; i++) await tick();
    expect(budget.used).toBe(0);
    for (let i = 0; i < 5; i++) expect(slots.take()).toBe(true);
    expect(slots.take()).toBe(false);
  });

  it('a burst of starts is spread over turns of the event loop, over all chunks, and every item still runs once', async () => {
    const slots = new Slots(500);
    const budget = new ByteBudget(1 << 30);
    let calls = 0;
    const run = async (item: IndexedItem) => {
      calls++;
      await new Promise((r) => setTimeout(r, 50)); // the whole first wave is still in flight while it starts
      return record(item);
    };
    // Two chunks of one job and 500 free slots: without the cap all 300 items would start at once.
    const both = Promise.all([collect(inOrder(items(150), run, slots, budget, 0)), collect(inOrder(items(150, 1000), run, slots, budget, 1))]);
    const perTurn = [calls];
    while (calls < 300 && perTurn.length < 100) {
      const before = calls;
      await tick(); // one turn of the event loop (I/O is polled in between)
      perTurn.push(calls - before);
    }
    expect(perTurn.reduce((x, y) => x + y, 0)).toBe(300);
    expect(Math.max(...perTurn)).toBe(STARTS_PER_TURN);
    expect(perTurn.length).toBe(300 / STARTS_PER_TURN);
    const [a, b] = await both;
    expect(a).toEqual(items(150).map((i) => i.index));
    expect(b).toEqual(items(150, 1000).map((i) => i.index));
    expect(calls).toBe(300);
  });

  it('a consumer that stops early starts nothing more', async () => {
    const slots = new Slots(2);
    let calls = 0;
    const run = async (item: IndexedItem) => (calls++, await tick(), record(item));
    for await (const batch of inOrder(items(1000), run, slots, new ByteBudget(1 << 30))) if (batch.at(-1)!.index >= 3) break;
    for (let i = 0; i < 10; i++) await tick();
    expect(calls).toBeLessThanOrEqual(8);
    expect(slots.take() && slots.take()).toBe(true);
  });

  // Found by an attack on this stage: a batch's bytes were given back when it was handed on, before
  // the writer had written it, so while a slow writer worked through a batch new items filled the
  // budget again (56 MiB held against a 16 MiB budget here).
  it('records fetched and not yet written stay within the budget (plus one per chunk and those in flight), with a slow writer', async () => {
    const MiB = 1024 * 1024;
    const body = 'x'.repeat(4 * MiB); // one shared string: this measures the accounting
    const concurrency = 4;
    const budget = new ByteBudget(16 * MiB);
    const slots = new Slots(concurrency);
    let held = 0;
    let peak = 0;
    const run = async (item: IndexedItem) => {
      await new Promise((r) => setTimeout(r, item.index % 25 === 0 ? 150 : 1)); // a slow head now and then
      held += body.length;
      peak = Math.max(peak, held);
      return makeRecord(record(item), { body, bodyEncoding: 'utf8' });
    };
    const chunk = async (c: number) => {
      const written: number[] = [];
      for await (const batch of inOrder(items(50, c * 50), run, slots, budget, c)) {
        for (const r of batch) {
          await new Promise((resolve) => setTimeout(resolve, 5)); // serialising and compressing 4 MiB takes time
          held -= body.length;
          written.push(r.index);
        }
      }
      expect(written).toEqual(items(50, c * 50).map((i) => i.index));
    };
    await chunk(0);
    expect(peak).toBeLessThanOrEqual(16 * MiB + 4 * MiB + concurrency * 4 * MiB);
    peak = 0;
    await Promise.all([1, 2, 3, 4].map(chunk));
    expect(peak).toBeLessThanOrEqual(16 * MiB + 4 * 4 * MiB + concurrency * 4 * MiB);
    expect(budget.used).toBe(0);
  }, 30_000);
});
