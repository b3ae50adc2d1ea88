/**
 * Matching a run against its baseline at a million URLs: `npx tsx bench/baseline.ts [URLS] [SAMPLED]`
 * (default 1,000,000 URLs, chunks of 500; SAMPLED chunks, default 20, for the shuffled case).
 *
 * The baseline's records are synthesised straight into its result files (2,000 gzipped NDJSON files
 * of 500 records, each with a status, a sha256 and an ETag, as the worker writes them), in a folder
 * store wrapped by a request counter; no origin is involved: what is measured is the comparison's
 * cost, which does not depend on the fetching. Then, for a later run's chunks,
 * `lookupBaseline` (what the worker calls before fetching a chunk) is timed and counted:
 *
 * - aligned: the same list in the same chunks (a schedule's usual run): every chunk;
 * - shifted: one URL added at the top, so no chunk lines up: every chunk (partition index built once);
 * - shuffled: the same URLs in random order: SAMPLED chunks (each touches nearly every partition).
 *
 * Prints JSON: requests per chunk by kind, bytes read per chunk, peak heap and RSS, time per chunk.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { BASELINE_DEFAULTS, lookupBaseline, type LookupStats } from '../functions/core/baseline.ts';
import type { IndexedItem } from '../functions/core/input.ts';
import { layout } from '../functions/core/layout.ts';
import { gzipOptions } from '../functions/core/ndjson.ts';
import { DEFAULT_OPTIONS } from '../functions/core/options.ts';
import { makeRecord } from '../functions/core/record.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { CountingStore } from '../test/support/counting-store.ts';

const URLS = Number(process.argv[2] ?? 1_000_000);
const SAMPLED = Number(process.argv[3] ?? 20);
const CHUNK = 500;
const chunks = Math.ceil(URLS / CHUNK);
const dir = mkdtempSync(join(tmpdir(), 'fanout-baseline-'));
const folder = new LocalStore(dir);
const store = new CountingStore(folder);
const baseline = '01900000-0000-7000-8000-000000000001';
const url = (i: number) => `https://site-${i % 5_000}.example/page/${i}?q=${i * 7}`;

let peakHeap = 0;
let peakRss = 0;
const sample = () => {
  const m = process.memoryUsage();
  peakHeap = Math.max(peakHeap, m.heapUsed);
  peakRss = Math.max(peakRss, m.rss);
};
const MB = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;

// --- the baseline run, synthesised -----------------------------------------------------------
let t = performance.now();
const startedAt = new Date().toISOString();
for (let c = 0; c < chunks; c++) {
  const lines: string[] = [];
  for (let i = c * CHUNK; i < Math.min(URLS, (c + 1) * CHUNK); i++) {
    const ok = i % 50 !== 0;
    lines.push(
      JSON.stringify(
        makeRecord({
          index: i,
          url: url(i),
          id: null,
          ok,
          status: ok ? 200 : 503,
          finalUrl: url(i),
          redirects: 0,
          headers: { 'content-type': 'text/html', etag: `"${i.toString(36)}"`, 'last-modified': 'Wed, 25 Nov 2026 10:00:00 GMT' },
          bytes: 2_000 + (i % 1000),
          truncated: false,
          sha256: randomBytes(32).toString('hex'),
          attempts: 1,
          startedAt,
          durationMs: 12.5,
          queuedMs: 0,
          error: null,
        }),
      ) + '\n',
    );
  }
  await folder.put(layout.results(baseline, c), Readable.from([lines.join('')]).pipe(createGzip(gzipOptions)));
}
await folder.put(layout.job(baseline), JSON.stringify({ jobId: baseline, createdAt: startedAt, options: { ...DEFAULT_OPTIONS, chunkSize: CHUNK }, total: URLS, chunks }));
await folder.put(layout.manifest(baseline), JSON.stringify({ jobId: baseline, state: 'completed' }));
const synthMs = performance.now() - t;

/** The items of chunk `c` of a later run whose list maps position -> baseline index. */
function itemsOf(c: number, at: (position: number) => number | null): IndexedItem[] {
  const items: IndexedItem[] = [];
  for (let p = c * CHUNK; p < (c + 1) * CHUNK; p++) {
    const i = at(p);
    if (i === undefined) break;
    items.push({ index: p, url: i === null ? `https://new.example/${p}` : url(i) });
  }
  return items;
}

async function measure(name: string, total: number, chunkNumbers: number[], at: (position: number) => number | null | undefined) {
  store.reset();
  peakHeap = 0;
  peakRss = 0;
  global.gc?.();
  const stats: LookupStats = { gets: 0, partitionsRead: 0 };
  let matched = 0;
  let items = 0;
  let maxGets = 0;
  let firstChunk: Record<string, number> | undefined;
  let firstChunkMs = 0;
  let start = performance.now();
  for (const c of chunkNumbers) {
    const before = stats.gets;
    const list = itemsOf(c, at as (p: number) => number | null).filter((_, k) => c * CHUNK + k < total);
    const found = await lookupBaseline(store, baseline, c, list, stats);
    matched += found.size;
    items += list.length;
    maxGets = Math.max(maxGets, stats.gets - before);
    sample();
    if (!firstChunk) {
      firstChunk = Object.fromEntries(store.counts);
      store.reset();
      firstChunkMs = performance.now() - start;
      start = performance.now();
    }
  }
  const ms = performance.now() - start;
  const rest = Object.fromEntries(store.counts);
  const n = chunkNumbers.length;
  return {
    case: name,
    chunksMeasured: n,
    items,
    matched,
    firstChunkRequests: firstChunk, // includes building the partition index where needed
    requestsPerChunkAfterFirst: Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, Math.round((v / Math.max(1, n - 1)) * 100) / 100])),
    firstChunkMs: Math.round(firstChunkMs), // with the index build where the lists do not line up
    maxGetsInAChunk: maxGets,
    partitionsReadPerChunk: Math.round((stats.partitionsRead / n) * 100) / 100,
    msPerChunkAfterFirst: Math.round((ms / Math.max(1, n - 1)) * 10) / 10,
    peakHeapMB: MB(peakHeap),
    peakRssMB: MB(peakRss),
  };
}

const all = Array.from({ length: chunks }, (_, c) => c);
const aligned = await measure('aligned (same list, same chunks)', URLS, all, (p) => (p < URLS ? p : undefined));
// One URL added at the top: every chunk holds one key of the baseline's previous chunk.
const shifted = await measure('shifted (one URL added at the top)', URLS + 1, Array.from({ length: Math.ceil((URLS + 1) / CHUNK) }, (_, c) => c), (p) =>
  p === 0 ? null : p <= URLS ? p - 1 : undefined,
);
// A random permutation (multiplicative hash: a bijection on 0..URLS-1 for a prime multiplier coprime with URLS).
const MULT = 7_919;
const sampledChunks = Array.from({ length: SAMPLED }, (_, k) => Math.floor((k * chunks) / SAMPLED));
const shuffled = await measure('shuffled (same URLs, random order)', URLS, sampledChunks, (p) => (p < URLS ? (p * MULT) % URLS : undefined));

const indexBytes = await (async () => {
  let bytes = 0;
  for (let p = 0; p < BASELINE_DEFAULTS.partitions; p++) bytes += (await folder.size(layout.baselinePartition(baseline, p))) ?? 0;
  return bytes;
})();
const resultBytes = (await folder.size(layout.results(baseline, 0))) ?? 0;

console.log(
  JSON.stringify(
    {
      urls: URLS,
      chunkSize: CHUNK,
      baselineChunks: chunks,
      synthesiseMs: Math.round(synthMs),
      resultFileBytes: resultBytes,
      partitions: BASELINE_DEFAULTS.partitions,
      partitionIndexBytes: indexBytes,
      node: process.version,
      results: [aligned, shifted, shuffled],
    },
    null,
    2,
  ),
);
rmSync(dir, { recursive: true, force: true });
