/**
 * A chunk's items fetched concurrently, their records handed on in index order (result files are
 * written in input order). Items start when the job has a free concurrency slot, and only while the
 * records that finished early fit the job's reorder budget: past it, only the item at the head of
 * the line starts, so a slow URL holds back memory, not the whole chunk.
 *
 * Chunks of a job share its slots; the lowest-numbered chunk is served first, so chunks complete
 * in order (`--out` and the dashboard follow a prefix that grows). Nothing is queued per item: an
 * item is started only when it can run (one promise each, the fetch's own), so a chunk of any size
 * costs its waiting items nothing (queuing them all used to keep a closure and three promises per
 * item alive until its turn: most of the garbage the collector then had to copy).
 */
import type { ByteBudget, Slots } from './engine/fetcher.ts';
import type { IndexedItem } from './input.ts';
import type { FetchRecord } from './record.ts';

/** What `run` returns for an item this delivery will not finish (its time budget ran out). */
export const HANDED_ON = Symbol('handed-on');

/**
 * A batch ends once its records hold this many budget bytes (records with large bodies): the bytes
 * come back when the batch is written, so smaller batches give them back sooner.
 */
const BATCH_MAX_BYTES = 1024 * 1024;

/** Marks an item whose `run` rejected (its error is kept apart). */
const FAILED = Symbol('failed');

type Outcome = FetchRecord | typeof HANDED_ON | typeof FAILED;

/**
 * Items this thread starts in one turn of the event loop, at most, over all chunks. A burst of
 * starts (a job's first wave: each item dispatching and opening a connection) is spread over
 * turns, so the first connections' requests go out while later ones are still being opened,
 * instead of after all of them. In the bench's latency-bound job (5,000 URLs x 100 ms, concurrency
 * 500, one core) this took the job from 1.49-1.55 s to 1.35-1.43 s; 10 to 40 measured alike. One
 * answer starts one item, so a steady flow of answers rarely reaches it.
 */
export const STARTS_PER_TURN = 20;

/** This thread's starts in the current turn, and the chunks waiting for the next turn. */
const turn = { starts: 0, waiting: [] as (() => void)[] };

function nextTurn(): void {
  turn.starts = 0;
  const waiting = turn.waiting;
  turn.waiting = [];
  for (const wake of waiting) wake();
}

/**
 * Yields `run(item)` for every item in index order, in batches (the records ready at the head of the
 * line, one or more); stops at the first item handed on. A rejected `run` is thrown when its item's
 * turn comes. Closing the generator early starts nothing more; the items in flight finish and give
 * their slots back.
 *
 * @example
 * for await (const batch of inOrder(items, (item) => fetchRecord(item), slots, budget)) for (const record of batch) write(record);
 */
export async function* inOrder(
  items: IndexedItem[],
  run: (item: IndexedItem) => Promise<FetchRecord | typeof HANDED_ON>,
  slots: Slots,
  budget: ByteBudget,
  /** Served before chunks of a higher rank (the chunk's number: a job's chunks then complete in order). */
  rank = 0,
): AsyncGenerator<FetchRecord[]> {
  const n = items.length;
  const outcomes: (Outcome | undefined)[] = new Array(n);
  const errors = new Map<number, unknown>();
  /** Budget bytes each finished, not yet handed on record holds. */
  const sizes = new Array<number>(n).fill(0);
  let started = 0;
  let head = 0;
  let closed = false;
  let askedForSlot = false;
  let askedForRoom = false;
  /** Resolves the wait for the head's outcome. */
  let wakeHead: (() => void) | undefined;
  /** Budget bytes of the batch handed on and not yet written. */
  let handedOn = 0;

  const finished = (at: number, outcome: Outcome): void => {
    if (!closed && outcome !== HANDED_ON && outcome !== FAILED) {
      sizes[at] = recordSize(outcome);
      budget.used += sizes[at]!;
    }
    outcomes[at] = outcome;
    slots.give();
    startMore();
    if (at === head && wakeHead) {
      const wake = wakeHead;
      wakeHead = undefined;
      wake();
    }
  };

  /** Starts the next item; the caller holds a slot for it. */
  const start = (): void => {
    const at = started++;
    run(items[at]!).then(
      (record) => finished(at, record),
      (error: unknown) => {
        errors.set(at, error);
        finished(at, FAILED);
      },
    );
  };

  const mayStart = () => !closed && started < n && (started === head || budget.available);

  /** A slot was handed to this chunk: used if an item may start now, else given back. */
  const onSlot = (): void => {
    askedForSlot = false;
    if (mayStart()) start();
    else slots.give();
    startMore();
  };

  const onRoom = (): void => {
    askedForRoom = false;
    startMore();
  };

  let askedForTurn = false;
  const onTurn = (): void => {
    askedForTurn = false;
    startMore();
  };

  /** Starts items while the turn, slots and room allow; otherwise asks to be called back (once). */
  function startMore(): void {
    while (mayStart()) {
      if (turn.starts >= STARTS_PER_TURN) {
        if (!askedForTurn) {
          askedForTurn = true;
          turn.waiting.push(onTurn);
        }
        return;
      }
      if (!slots.take()) {
        if (!askedForSlot) {
          askedForSlot = true;
          slots.wait(onSlot, rank);
        }
        return;
      }
      if (turn.starts++ === 0) setImmediate(nextTurn); // the turn's count ends with it
      start();
    }
    if (!closed && started < n && !askedForRoom && !askedForSlot && !askedForTurn) {
      askedForRoom = true;
      budget.onRelease(onRoom);
    }
  }

  try {
    while (head < n) {
      startMore(); // the new head starts even when the budget is full
      if (outcomes[head] === undefined) await new Promise<void>((resolve) => (wakeHead = resolve));
      // Responses first, records after: the answers that came in with this one are handled (and
      // their next requests sent) before the records are serialised and compressed, so the writing
      // fills the time spent waiting on the network instead of delaying the next requests.
      await new Promise<void>((resolve) => setImmediate(resolve));
      // Every record ready from the head on goes in one batch: one hand-over for many records. Its
      // bytes stay counted until the consumer asks for the next batch (it has written this one):
      // given back earlier, the records being written would come on top of a full budget.
      const batch: FetchRecord[] = [];
      let stop: typeof FAILED | typeof HANDED_ON | undefined;
      for (let outcome = outcomes[head]; outcome !== undefined; outcome = outcomes[head]) {
        outcomes[head] = undefined;
        if (outcome === FAILED || outcome === HANDED_ON) {
          stop = outcome;
          break;
        }
        batch.push(outcome);
        handedOn += sizes[head]!;
        sizes[head] = 0;
        if (++head === n || handedOn >= BATCH_MAX_BYTES) break;
      }
      if (batch.length > 0) yield batch;
      budget.release(handedOn);
      handedOn = 0;
      if (stop === FAILED) throw errors.get(head);
      if (stop === HANDED_ON) return;
    }
  } finally {
    // Records this generator will never hand on (and a batch whose writing was abandoned) give
    // their budget back.
    closed = true;
    let held = handedOn;
    for (let i = 0; i < n; i++) held += sizes[i]!;
    budget.release(held);
  }
}

/**
 * Bytes a record holds in memory, for the reorder budget: a body string takes one byte a character
 * when every character is Latin-1 (base64 always), else two.
 */
function recordSize(record: FetchRecord): number {
  const body = record.body;
  if (!body) return 512;
  return 512 + (record.bodyEncoding === 'base64' || !/[^\x00-\xff]/.test(body) ? body.length : 2 * body.length);
}
