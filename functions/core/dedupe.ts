/**
 * The `dedupe` option: the first item with a given URL is fetched, later ones are marked
 * `duplicateOf` its index and get a record without a request (one record per input line still).
 *
 * Memory stays bounded for ten million lines: the set keeps a 64-bit hash of each normalized
 * request (the first 8 bytes of its SHA-256) and the index of its first item in typed arrays
 * (12 bytes a slot, at most 3/4 full, grown 1.5x): 16-24 MB per million distinct URLs, never the
 * strings. Two distinct URLs share a 64-bit hash with odds of about n^2 / 2^65 (3 in a million
 * for ten million URLs); the later one would then be marked a duplicate of the other.
 */
import { hash } from 'node:crypto';
import type { IndexedItem, InputItem } from './input.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';

/** Dedupe defaults, stated once. */
export const DEDUPE_DEFAULTS = {
  /** Slots of a new set. */
  initialSlots: 1 << 12,
  /** Fullest a set gets before it grows. */
  maxLoad: 0.75,
  /** Growth factor: 1.5 keeps the worst case at 24 bytes per URL (2x would be 32). */
  growth: 1.5,
} as const;

/**
 * The request an item makes, for comparing: the URL normalized as WHATWG URL does (scheme and
 * host lower-cased, default port and dot segments removed, percent-encoding normalized) without
 * its fragment (never sent), plus the item's own method, headers and body when it has any (a POST
 * with another body is another request).
 *
 * @example
 * requestKey({ url: 'HTTP://Example.com:80/a/../b#top' }) // 'http://example.com/b'
 */
export function requestKey(item: InputItem): string {
  const url = new URL(item.url);
  url.hash = '';
  if (item.method === undefined && item.headers === undefined && item.body === undefined) return url.href;
  const headers = item.headers
    ? Object.entries(item.headers)
        .map(([k, v]) => [k.toLowerCase(), v])
        .sort()
    : null;
  return `${url.href}\n${JSON.stringify([item.method?.toUpperCase() ?? null, headers, item.body ?? null])}`;
}

/**
 * A set of 64-bit hashes, each with the index of the item that first had it: an open-addressing
 * table (linear probing) in three Uint32Arrays.
 */
export class DedupeSet {
  private hi: Uint32Array;
  private lo: Uint32Array;
  /** index + 1 of the first item; 0 marks an empty slot. */
  private first: Uint32Array;
  private count = 0;

  constructor(slots: number = DEDUPE_DEFAULTS.initialSlots) {
    this.hi = new Uint32Array(slots);
    this.lo = new Uint32Array(slots);
    this.first = new Uint32Array(slots);
  }

  /** Distinct keys held. */
  get size(): number {
    return this.count;
  }

  /** Bytes held by the table. */
  get bytes(): number {
    return this.first.length * 12;
  }

  /**
   * Records `key` as first seen at `index`, unless it was seen before.
   *
   * @returns the index of its first item, or undefined when `key` is new.
   * @example
   * const set = new DedupeSet();
   * set.firstIndex('http://a.test/', 0) // undefined
   * set.firstIndex('http://a.test/', 5) // 0
   */
  firstIndex(key: string, index: number): number | undefined {
    const digest = hash('sha256', key, 'buffer');
    const hi = digest.readUInt32BE(0);
    const lo = digest.readUInt32BE(4);
    const found = this.find(hi, lo);
    if (this.first[found] !== 0) return this.first[found]! - 1;
    this.hi[found] = hi;
    this.lo[found] = lo;
    this.first[found] = index + 1;
    if (++this.count > this.first.length * DEDUPE_DEFAULTS.maxLoad) this.grow();
    return undefined;
  }

  /** The set as bytes, to hand on to the next slice of a list planned in slices. */
  toBuffer(): Buffer {
    const slots = this.first.length;
    const out = Buffer.alloc(8 + 12 * slots);
    out.writeUInt32LE(this.count, 0);
    out.writeUInt32LE(slots, 4);
    for (const [i, array] of [this.hi, this.lo, this.first].entries()) {
      Buffer.from(array.buffer, array.byteOffset, array.byteLength).copy(out, 8 + i * 4 * slots);
    }
    return out;
  }

  /** A set written by {@link toBuffer}. */
  static fromBuffer(bytes: Buffer): DedupeSet {
    const count = bytes.readUInt32LE(0);
    const slots = bytes.readUInt32LE(4);
    if (bytes.length !== 8 + 12 * slots) throw new Error(`dedupe state of ${bytes.length} bytes is not ${slots} slots`);
    const set = new DedupeSet(slots);
    for (const [i, array] of [set.hi, set.lo, set.first].entries()) {
      bytes.copy(Buffer.from(array.buffer, array.byteOffset, array.byteLength), 0, 8 + i * 4 * slots, 8 + (i + 1) * 4 * slots);
    }
    set.count = count;
    return set;
  }

  /** The slot holding (hi, lo), or the empty slot where it belongs. */
  private find(hi: number, lo: number): number {
    const slots = this.first.length;
    // The hash is uniform: its high word modulo the size is as good a slot as any.
    let at = hi % slots;
    while (this.first[at] !== 0 && (this.hi[at] !== hi || this.lo[at] !== lo)) at = at + 1 === slots ? 0 : at + 1;
    return at;
  }

  private grow(): void {
    const { hi, lo, first } = this;
    const slots = Math.ceil(first.length * DEDUPE_DEFAULTS.growth);
    this.hi = new Uint32Array(slots);
    this.lo = new Uint32Array(slots);
    this.first = new Uint32Array(slots);
    for (let i = 0; i < first.length; i++) {
      if (first[i] === 0) continue;
      const at = this.find(hi[i]!, lo[i]!);
      this.hi[at] = hi[i]!;
      this.lo[at] = lo[i]!;
      this.first[at] = first[i]!;
    }
  }
}

/**
 * Marks later items of a request already seen with `duplicateOf` (the first one's index); the
 * items themselves pass through in order, so indexes and lines are unchanged.
 *
 * @example
 * for await (const item of markDuplicates(input.items)) if (item.duplicateOf !== undefined) skipped++;
 */
export async function* markDuplicates(items: AsyncIterable<IndexedItem>, set = new DedupeSet()): AsyncGenerator<IndexedItem> {
  for await (const item of items) {
    const first = set.firstIndex(requestKey(item), item.index);
    yield first === undefined ? item : { ...item, duplicateOf: first };
  }
}

/**
 * Marks one item when its request was seen before (the slices of a large upload, item by item).
 *
 * @example
 * const item = markDuplicate(set, { ...parsed, index });
 */
export function markDuplicate(set: DedupeSet, item: IndexedItem): IndexedItem {
  const first = set.firstIndex(requestKey(item), item.index);
  if (first !== undefined) item.duplicateOf = first;
  return item;
}

/**
 * Where a list planned in slices keeps the set for the slice starting at `offset`: keyed by the
 * offset, so a redelivered slice starts from the same set and rewrites the same chunk inputs.
 */
function stateKey(jobId: string, offset: number): string {
  return `${layout.jobPrefix(jobId)}plan/dedupe-${offset}.bin`;
}

/** The set a slice starting at `offset` begins with (a new one for the first slice). */
export async function loadDedupeState(store: ObjectStore, jobId: string, offset: number): Promise<DedupeSet> {
  if (offset === 0) return new DedupeSet();
  const bytes = await store.get(stateKey(jobId, offset));
  if (!bytes) throw new Error(`dedupe state for job ${jobId} at offset ${offset} is missing`);
  return DedupeSet.fromBuffer(bytes);
}

/** Keeps the set for the slice that starts at `offset`. */
export async function saveDedupeState(store: ObjectStore, jobId: string, offset: number, set: DedupeSet): Promise<void> {
  await store.put(stateKey(jobId, offset), set.toBuffer(), { contentType: 'application/octet-stream' });
}

/** Removes the sets once the job is planned (or rejected). */
export async function deleteDedupeState(store: ObjectStore, jobId: string): Promise<void> {
  await store.deletePrefix(`${layout.jobPrefix(jobId)}plan/`);
}
