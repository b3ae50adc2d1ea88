/**
 * Matching a chunk against its baseline costs a bounded number of store requests and keeps only the
 * chunk's own keys (core/baseline.ts); the comparison and the conditional headers.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BASELINE_DEFAULTS, compareResult, conditionalItem, itemKey, lookupBaseline, type LookupStats } from '../functions/core/baseline.ts';
import type { IndexedItem } from '../functions/core/input.ts';
import { layout } from '../functions/core/layout.ts';
import { gzipNdjson } from '../functions/core/ndjson.ts';
import { DEFAULT_OPTIONS, parseJobOptions } from '../functions/core/options.ts';
import { makeRecord, type FetchRecord } from '../functions/core/record.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { CountingStore } from './support/counting-store.ts';
import { tempDir } from './support/tmp.ts';

const BASE = '01900000-0000-7000-8000-0000000000b1';
const SIZE = 5;
const CHUNKS = 12; // more than BASELINE_DEFAULTS.directChunks
const url = (i: number) => `https://example.com/p/${i}`;
const sha = (i: number) => createHash('sha256').update(String(i)).digest('hex');

function record(i: number, extra: Partial<FetchRecord> = {}): FetchRecord {
  return makeRecord({
    index: i,
    url: url(i),
    id: i === 3 ? 'three' : null,
    ok: true,
    status: 200,
    finalUrl: url(i),
    redirects: 0,
    headers: { etag: `"v${i}"` },
    bytes: 100 + i,
    truncated: false,
    sha256: sha(i),
    attempts: 1,
    startedAt: new Date(0).toISOString(),
    durationMs: 1,
    queuedMs: 0,
    error: null,
    ...extra,
  });
}

async function baselineStore() {
  const folder = new LocalStore(tempDir());
  for (let c = 0; c < CHUNKS; c++) {
    await folder.put(layout.results(BASE, c), gzipNdjson(Array.from({ length: SIZE }, (_, k) => record(c * SIZE + k))));
  }
  await folder.put(layout.job(BASE), JSON.stringify({ jobId: BASE, createdAt: new Date(0).toISOString(), options: { ...DEFAULT_OPTIONS, chunkSize: SIZE }, total: SIZE * CHUNKS, chunks: CHUNKS }));
  await folder.put(layout.manifest(BASE), JSON.stringify({ state: 'completed' }));
  return new CountingStore(folder);
}

const itemsAt = (positions: (number | null)[]): IndexedItem[] =>
  positions.map((i, p) => (i === null ? { index: p, url: 'https://example.com/new' } : { index: p, url: url(i), ...(i === 3 ? { id: 'three' } : {}) }));

describe('lookupBaseline', () => {
  it('aligned lists: one GET per chunk, every key found, the index never written', async () => {
    const store = await baselineStore();
    await lookupBaseline(store, BASE, 0, itemsAt([0, 1, 2, 3, 4])); // job.json read once, then cached
    for (let c = 1; c < CHUNKS; c++) {
      store.reset();
      const items = itemsAt(Array.from({ length: SIZE }, (_, k) => c * SIZE + k));
      const found = await lookupBaseline(store, BASE, c, items);
      expect(found.size).toBe(SIZE);
      expect(Object.fromEntries(store.counts)).toEqual({ get: 1 });
    }
    expect(await store.exists(layout.baselineIndex(BASE))).toBe(false);
  });

  it('lists that do not line up: the index is written once, then at most 1 + partitions GETs per chunk, only wanted keys kept', async () => {
    const store = await baselineStore();
    // One URL added at the top: every chunk holds a key of the baseline's previous chunk.
    const shifted = [null, ...Array.from({ length: SIZE * CHUNKS }, (_, i) => i)];
    const first = await lookupBaseline(store, BASE, 0, itemsAt(shifted.slice(0, SIZE)));
    expect(first.size).toBe(SIZE - 1);
    expect(first.has('url:https://example.com/new')).toBe(false);
    expect(await store.exists(layout.baselineIndex(BASE))).toBe(true);
    for (let c = 1; c < CHUNKS; c++) {
      store.reset();
      const stats: LookupStats = { gets: 0, partitionsRead: 0 };
      const items = itemsAt(shifted.slice(c * SIZE, (c + 1) * SIZE)).map((item, k) => ({ ...item, index: c * SIZE + k }));
      const found = await lookupBaseline(store, BASE, c, items, stats);
      expect([...found.keys()].sort()).toEqual(items.map(itemKey).sort());
      // The same-numbered file, plus the one partition holding the key that moved in.
      expect(Object.fromEntries(store.counts)).toEqual({ get: 2 });
      expect(stats.partitionsRead).toBe(1);
    }
    // Shuffled: never more than the file and every partition.
    store.reset();
    const random = itemsAt([59, 7, 33, 3, 21]);
    const found = await lookupBaseline(store, BASE, 4, random);
    expect(found.size).toBe(5);
    expect(found.get('id:three')).toMatchObject({ sha256: sha(3), etag: '"v3"', ok: true, status: 200, bytes: 103 });
    expect(store.counts.get('get')!).toBeLessThanOrEqual(1 + BASELINE_DEFAULTS.partitions);
  });


  it('chunks that need the index at once: one builds it, the others wait for it', async () => {
    const store = await baselineStore();
    const shifted = [null, ...Array.from({ length: SIZE * CHUNKS }, (_, i) => i)];
    const chunkItems = (c: number) => itemsAt(shifted.slice(c * SIZE, (c + 1) * SIZE)).map((item, k) => ({ ...item, index: c * SIZE + k }));
    const found = await Promise.all([1, 2, 3].map((c) => lookupBaseline(store, BASE, c, chunkItems(c))));
    expect(found.map((f) => f.size)).toEqual([SIZE, SIZE, SIZE]);
    // 3 claims tried, then the partitions and the marker written once (twice or more without the claim).
    expect(store.counts.get('put')).toBe(3 + BASELINE_DEFAULTS.partitions + 1);
  });

  it('a claim left by a builder that died long ago does not make the next chunk wait', async () => {
    const store = await baselineStore();
    await store.put(layout.baselineClaim(BASE), JSON.stringify({ at: new Date(0).toISOString() }));
    const started = Date.now();
    const found = await lookupBaseline(store, BASE, 1, itemsAt([0, 1, 2]).map((item, k) => ({ ...item, index: 5 + k })));
    expect(found.size).toBe(3);
    expect(await store.exists(layout.baselineIndex(BASE))).toBe(true);
    expect(Date.now() - started).toBeLessThan(BASELINE_DEFAULTS.buildWaitMs);
  });
});

describe('comparing a record with its baseline', () => {
  const options = parseJobOptions({});
  const previous = { status: 200, sha256: sha(1), ok: true, bytes: 101, etag: '"v1"', lastModified: 'Wed, 25 Nov 2026 10:00:00 GMT' };
  const item: IndexedItem = { index: 0, url: url(1) };

  it('asks conditionally for GET and HEAD of an ok record with validators; the item and job headers win', () => {
    expect(conditionalItem(item, options, previous).headers).toEqual({ 'if-none-match': '"v1"', 'if-modified-since': previous.lastModified });
    const post = { ...item, method: 'POST' };
    expect(conditionalItem(post, options, previous)).toBe(post);
    expect(conditionalItem(item, parseJobOptions({ method: 'POST' }), previous)).toBe(item);
    expect(conditionalItem(item, options, { ...previous, ok: false })).toBe(item);
    expect(conditionalItem({ ...item, headers: { 'If-None-Match': '"mine"' } }, options, previous).headers).toEqual({
      'If-None-Match': '"mine"',
      'if-modified-since': previous.lastModified,
    });
    expect(conditionalItem(item, parseJobOptions({ headers: { 'if-modified-since': 'x' } }), previous).headers).toEqual({ 'if-none-match': '"v1"' });
  });

  it('a 304 to a conditional request is the baseline unchanged; other answers are compared by status and sha256', () => {
    const notModified = compareResult({ record: record(1, { status: 304, ok: false, sha256: null, bytes: 0, headers: {} }), body: Buffer.alloc(0), contentType: undefined }, previous, true);
    expect(notModified.body).toBeNull();
    expect(notModified.record).toMatchObject({ ok: true, status: 200, sha256: sha(1), bytes: 0, notModified: true, change: 'unchanged', previous: { status: 200, ok: true, bytes: 101 } });
    expect(notModified.record.headers).toEqual({ etag: '"v1"', 'last-modified': previous.lastModified });
    // A 304 nobody asked for is just a different answer.
    expect(compareResult({ record: record(1, { status: 304, sha256: null }), body: null, contentType: undefined }, previous, false).record.change).toBe('changed');
    expect(compareResult({ record: record(1), body: null, contentType: undefined }, previous, true).record.change).toBe('unchanged');
    expect(compareResult({ record: record(2), body: null, contentType: undefined }, previous, true).record.change).toBe('changed');
    expect(compareResult({ record: record(1), body: null, contentType: undefined }, undefined, false).record).toMatchObject({ change: 'new', previous: null });
  });
});
