/**
 * Time budgets and continuations. A worker that may be stopped (a Lambda near its timeout) stops
 * starting items when an item could no longer finish in time, aborts what is still running just
 * before the deadline, keeps what it fetched as a part file, and hands the rest of the chunk on.
 * The next delivery finds the parts in the store and starts after them, so a chunk is never
 * half-lost and never refetched whole.
 */
import { randomUUID } from 'node:crypto';
import { addCounts, emptyCounts, type Counts } from './counts.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';

/** Continuation defaults, stated once. */
export const CONTINUATION_DEFAULTS = {
  /** Time kept back at the end for writing the part file and re-enqueueing. */
  marginMs: 10_000,
  /** After this many hand-overs a chunk runs without a budget (the queue's retries then apply). */
  maxContinuations: 50,
} as const;

/** When to stop starting items and when to abort the rest, for one delivery. */
export class TimeBudget {
  /** Aborted just before the deadline: in-flight items stop and are handed on. */
  readonly hard = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly stopStartingAt: number;

  constructor(deadline: number, itemTimeoutMs: number, marginMs: number = CONTINUATION_DEFAULTS.marginMs) {
    const hardAt = deadline - marginMs;
    this.stopStartingAt = hardAt - itemTimeoutMs;
    this.timer = setTimeout(() => this.hard.abort(new Error('time budget')), Math.max(0, hardAt - Date.now()));
    this.timer.unref();
  }

  /** An item started now could finish one attempt before the hard stop. */
  canStart(): boolean {
    return !this.hard.signal.aborted && Date.now() < this.stopStartingAt;
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}

export interface PartsChain {
  /** Part files covering items [0, next) of the chunk, in order. */
  parts: string[];
  /** Position in the chunk where fetching resumes. */
  next: number;
  /** The parts' records counted, when every part's mark says (else the parts must be read to count). */
  counts: Counts | null;
}

/** The parts earlier deliveries of a chunk left, as a contiguous chain from the chunk's start. */
export async function partsChain(store: ObjectStore, jobId: string, chunk: number): Promise<PartsChain> {
  const prefix = layout.partsPrefix(jobId, chunk);
  const ranges = new Map<number, { to: number; counts?: Counts; file?: string; key: string; data: Buffer }>();
  /** Marks no delivery can use (damaged), with what was read: removed, or their positions could never be marked again. */
  const unusable: { key: string; data: Buffer }[] = [];
  for await (const key of store.list(prefix)) {
    if (!key.endsWith('.json')) continue;
    const data = await store.get(key);
    if (!data) continue;
    const mark = parseMark(data, prefix);
    // A mark counts at the position its key names (one mark a position, only if absent).
    if (!mark || key !== layout.partDone(jobId, chunk, mark.from)) {
      unusable.push({ key, data });
      continue;
    }
    ranges.set(mark.from, { ...mark, key, data });
  }
  const parts: string[] = [];
  let next = 0;
  let counts: Counts | null = emptyCounts();
  while (ranges.has(next)) {
    const range = ranges.get(next)!;
    const file = range.file ?? layout.part(jobId, chunk, next);
    if ((await store.size(file)) === null) {
      // Its part is gone (a store damaged or cleared by hand): the chain ends before it, and this mark
      // and the later ones go, so their items are fetched again instead of every delivery failing.
      for (const [from, later] of ranges) if (from >= next) unusable.push(later);
      break;
    }
    parts.push(file);
    counts = counts && range.counts ? addCounts(counts, range.counts) : null;
    next = range.to;
  }
  // Only a mark still as it was read: another delivery may have replaced a removed one meanwhile.
  await Promise.all(unusable.map(async ({ key, data }) => ((await store.get(key))?.equals(data) ? store.delete(key) : undefined)));
  return { parts, next, counts };
}

/** A part's mark, or undefined when it is not one (damaged): `file` kept only if it is one of this chunk's parts. */
function parseMark(data: Buffer, prefix: string): { from: number; to: number; counts?: Counts; file?: string } | undefined {
  let mark: { from?: unknown; to?: unknown; counts?: Counts; file?: unknown };
  try {
    mark = JSON.parse(data.toString('utf8')) as typeof mark;
  } catch {
    return undefined;
  }
  const { from, to, counts, file } = mark ?? {};
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || (from as number) < 0 || (to as number) <= (from as number)) return undefined;
  const named = typeof file === 'string' && file.startsWith(prefix) && file.length > prefix.length && !file.slice(prefix.length).includes('/') && !file.endsWith('.json') ? file : undefined;
  return { from: from as number, to: to as number, counts, file: named };
}

/**
 * Removes a done chunk's parts folder, whoever's parts they are (a dead delivery's, or one that
 * overlapped the delivery that finished). Best effort: what stays is only garbage, never read again.
 */
export async function removeParts(store: ObjectStore, jobId: string, chunk: number): Promise<void> {
  await store.deletePrefix(layout.partsPrefix(jobId, chunk)).catch(() => {});
}

/**
 * A delivery's own id for its part files (`layout.deliveryPart`): a part of its own name can be
 * neither deleted nor replaced by another delivery of the chunk, running at the same time or later.
 */
export function newDeliveryId(): string {
  return randomUUID().replaceAll('-', '').slice(0, 16);
}

/**
 * Records that a part file holds items [from, to) of the chunk, and their counts (so the result file
 * is counted without reading the parts back: their records may hold large bodies). `file` names a
 * delivery's own part file (else the part is `layout.part(jobId, chunk, from)`). One mark a
 * position, only if absent: false when another delivery marked it first.
 */
export async function markPart(store: ObjectStore, jobId: string, chunk: number, from: number, to: number, counts?: Counts, file?: string): Promise<boolean> {
  return store.put(layout.partDone(jobId, chunk, from), JSON.stringify({ from, to, counts, ...(file ? { file } : {}) }), { ifAbsent: true, contentType: 'application/json' });
}
