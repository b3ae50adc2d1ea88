/**
 * A latency histogram with ~5% resolution, small enough to store in every chunk's summary and
 * mergeable by adding counts, so percentiles of a ten-million-URL job come from its chunk files.
 */

const GROWTH = 1.05;
const LOG_GROWTH = Math.log(GROWTH);

/** Sparse counts: bucket number -> how many durations fell in it. */
export type Histogram = Record<string, number>;

function bucketOf(ms: number): number {
  return Math.floor(Math.log(Math.max(0, ms) + 1) / LOG_GROWTH);
}

/** The middle of a bucket, in ms. */
function bucketValue(bucket: number): number {
  return (GROWTH ** bucket + GROWTH ** (bucket + 1)) / 2 - 1;
}

export function recordLatency(histogram: Histogram, ms: number): void {
  const bucket = bucketOf(ms);
  histogram[bucket] = (histogram[bucket] ?? 0) + 1;
}

export function mergeHistograms(into: Histogram, from: Histogram): Histogram {
  for (const [bucket, count] of Object.entries(from)) into[bucket] = (into[bucket] ?? 0) + count;
  return into;
}

/**
 * The q-quantile (0..1) in ms, within the histogram's resolution; null when empty.
 *
 * @example
 * const h = {}; for (const ms of [10, 20, 30]) recordLatency(h, ms);
 * quantile(h, 0.5) // ~20
 */
export function quantile(histogram: Histogram, q: number): number | null {
  const buckets = Object.entries(histogram)
    .map(([b, c]) => [Number(b), c] as const)
    .sort((a, b) => a[0] - b[0]);
  const total = buckets.reduce((sum, [, c]) => sum + c, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const [bucket, count] of buckets) {
    seen += count;
    if (seen >= rank) return Math.round(bucketValue(bucket) * 10) / 10;
  }
  return Math.round(bucketValue(buckets.at(-1)![0]) * 10) / 10;
}

export interface LatencySummary {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export function latencySummary(histogram: Histogram): LatencySummary {
  return { p50: quantile(histogram, 0.5), p95: quantile(histogram, 0.95), p99: quantile(histogram, 0.99) };
}
