/**
 * `npm run bench:aws`: the AWS path at 20,000 chunks, measured through the built Lambda bundles
 * against fauxqs (SQS + S3) and dynalite (DynamoDB) under Lambda's limits (test/support/aws-scale.ts).
 *
 * A job of BENCH_AWS_CHUNKS chunks (default 20,000; chunkSize 1 over as many URLs to loopback
 * origins) runs through BENCH_AWS_CONTAINERS worker containers (default 2). Printed:
 * - S3 / SQS / DynamoDB requests per chunk made by the worker function, by operation, and those of
 *   the submit call; the event source mapping's own SQS calls apart;
 * - the requests and time of `GET /jobs/:id` on a cold and on a warm API container, half-way
 *   through the job (the workers paused) and at the end;
 * - the results read back through the API (pages, links, largest response against 6 MB);
 * - Lambda GB-seconds (handler time x 1,024 MB) and the wall time users wait;
 * - the cost of a million and of ten million URLs from these measurements, at us-east-1 prices.
 * BENCH_AWS_SCALES=2000,20000 runs several sizes in one go (to show whether per-chunk cost is flat).
 * BENCH_AWS_READ=0 skips reading the results back. BENCH_AWS_BUDGET_S stops the workers after that
 * long (per size); per-chunk figures are then over the chunks done.
 */
import { writeFileSync } from 'node:fs';
import { openScaleHarness, LAMBDA_LIMITS, type ScaleReport } from '../test/support/aws-scale.ts';
import { total, type RequestCounts } from '../test/support/fauxqs.ts';

/** us-east-1 list prices (USD), stated once. */
export const PRICES = {
  s3TierOnePer1000: 0.005, // PUT, COPY, POST, LIST
  s3TierTwoPer1000: 0.0004, // GET, HEAD and the rest (DELETE is free)
  sqsPerMillion: 0.4, // standard queue requests, each 64 KiB of payload one request
  dynamoWritePerMillion: 0.625, // on-demand write request units
  dynamoReadPerMillion: 0.125, // on-demand read request units
  lambdaPerGbSecond: 0.0000166667, // x86
  lambdaPerMillionRequests: 0.2,
  httpApiPerMillion: 1.0,
} as const;

/** The product's default chunk size (CONTRACT.md), used to turn URLs into chunks. */
const DEFAULT_CHUNK_SIZE = 500;
/** Assumed for the fetch time that loopback hides: mean latency of a real URL and the job's concurrency. */
const REAL_WORLD = { meanLatencyMs: 200, concurrency: 64 };

const S3_TIER_ONE = new Set(['PutObject', 'CopyObject', 'ListObjectsV2', 'CreateMultipartUpload', 'UploadPart', 'CompleteMultipartUpload', 'ListMultipartUploads']);
const S3_FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);
const DYNAMO_WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);

/** Dollars for a set of requests (one request = one unit; DynamoDB items assumed <= 1 KB). */
export function requestCost(counts: RequestCounts): number {
  let usd = 0;
  for (const [op, n] of Object.entries(counts.s3 ?? {})) {
    if (S3_FREE.has(op)) continue;
    usd += (n / 1000) * (S3_TIER_ONE.has(op) ? PRICES.s3TierOnePer1000 : PRICES.s3TierTwoPer1000);
  }
  usd += (total(counts, 'sqs') / 1e6) * PRICES.sqsPerMillion;
  for (const [op, n] of Object.entries(counts.dynamodb ?? {})) {
    usd += (n / 1e6) * (DYNAMO_WRITES.has(op) ? PRICES.dynamoWritePerMillion : PRICES.dynamoReadPerMillion);
  }
  return usd;
}

const scale = (counts: RequestCounts, factor: number): RequestCounts =>
  Object.fromEntries(Object.entries(counts).map(([s, ops]) => [s, Object.fromEntries(Object.entries(ops).map(([op, n]) => [op, n * factor]))]));

const fmt = (n: number, digits = 2) => n.toLocaleString('en-US', { maximumFractionDigits: digits });
const perChunk = (counts: RequestCounts, chunks: number) =>
  ['s3', 'sqs', 'dynamodb']
    .map((s) => `${s} ${fmt(total(counts, s) / chunks)} (${Object.entries(counts[s] ?? {}).map(([op, n]) => `${op} ${fmt(n / chunks)}`).join(', ') || '-'})`)
    .join('\n    ');
const usd = (n: number) => `$${n === 0 ? '0' : n < 0.0001 ? n.toExponential(1) : n < 0.01 ? n.toFixed(5) : n.toFixed(2)}`;

/** The chunks the figures are divided by: all of them, or those done when the budget ran out. */
const chunksOf = (r: ScaleReport) => (r.gaveUp ? Math.max(1, r.status.chunks.done) : r.chunks);

function print(r: ScaleReport): void {
  const chunks = chunksOf(r);
  console.log(`\n== ${fmt(r.urls)} URLs in ${fmt(r.chunks)} chunks (chunkSize ${fmt(r.urls / r.chunks)}) ==`);
  console.log(`submit: ${r.submit.ms} ms, request ${fmt(r.submit.eventBytes)} B; S3 ${total(r.submit.requests, 's3')}, SQS ${total(r.submit.requests, 'sqs')}, DynamoDB ${total(r.submit.requests, 'dynamodb')} requests`);
  console.log(`job: ${fmt(r.wallMs / 1000)} s from submit to the queues drained, state ${r.status.state}, ${fmt(r.status.done)}/${fmt(r.status.total)} done, ${r.status.failed} failed${r.gaveUp ? ' (GAVE UP)' : ''}`);
  if (r.gaveUp) console.log(`budget reached: figures below are per chunk over the ${fmt(chunks)} chunks done`);
  console.log(`worker requests per chunk:\n    ${perChunk(r.worker, chunks)}`);
  console.log(`event source mapping (harness) per chunk: ${perChunk(r.eventSource, chunks).split('\n')[1]?.trim() ?? ''}`);
  console.log(`worker: ${fmt(r.invocations)} invocations, ${fmt(r.gbSeconds, 1)} GB-s (${fmt((r.gbSeconds / chunks) * 1000, 2)} GB-ms per chunk) at ${LAMBDA_LIMITS.workerMemoryMb} MB; max fds ${r.maxWorkerFds}; EMFILE ${r.connectErrors.EMFILE ?? 0}; batch item failures ${r.batchItemFailures}`);
  const statusLine = (when: string, calls: ScaleReport['statusCalls']) => {
    for (const [i, c] of calls.entries()) {
      console.log(`GET /jobs/:id ${when} (${i === 0 ? 'cold' : 'warm'} container): ${c.ms} ms, ${fmt(c.responseBytes)} B; S3 ${total(c.requests, 's3')} (${JSON.stringify(c.requests.s3 ?? {})}), DynamoDB ${total(c.requests, 'dynamodb')}`);
    }
  };
  statusLine('half-way', r.midJobStatusCalls);
  statusLine('at the end', r.statusCalls);
  if (r.results) {
    const largest = Math.max(...r.results.calls.map((c) => c.responseBytes));
    const ms = r.results.calls.reduce((a, c) => a + c.ms, 0);
    const ordered = r.results.indexes.every((x, i) => x === i) && r.results.count === r.urls;
    console.log(`results: ${fmt(r.results.count)} records read back (${ordered ? 'all, in order' : 'NOT all in order'}), ${r.results.calls.length} API calls in ${fmt(ms / 1000)} s, pages ${JSON.stringify(r.results.pages)}, largest response ${fmt(largest)} B (limit ${fmt(LAMBDA_LIMITS.payloadBytes)})`);
  }
  for (const v of r.apiViolations as { method: string; path: string; limit: string; responseBytes: number; ms: number }[]) {
    console.log(`LIMIT BROKEN: ${v.method} ${v.path}: ${v.limit} (${fmt(v.responseBytes)} B, ${v.ms} ms)`);
  }
}

/** Cost of a job of `urls` URLs at the default chunk size, from the measured per-chunk requests. */
function cost(urls: number, r: ScaleReport): string {
  const chunks = Math.ceil(urls / DEFAULT_CHUNK_SIZE);
  const factor = chunks / chunksOf(r);
  const worker = requestCost(scale(r.worker, factor));
  const submit = requestCost(scale(r.submit.requests, chunks / r.chunks));
  // The event source mapping: one receive per batch of 2 and one batched delete, at least.
  const esm = ((chunks / LAMBDA_LIMITS.batchSize) * 2 / 1e6) * PRICES.sqsPerMillion;
  const invocations = (r.invocations / chunksOf(r)) * chunks;
  const fetchGbS = ((urls * REAL_WORLD.meanLatencyMs) / 1000 / REAL_WORLD.concurrency) * (LAMBDA_LIMITS.workerMemoryMb / 1024);
  const overheadGbS = (r.gbSeconds / chunksOf(r)) * chunks;
  const lambda = (fetchGbS + overheadGbS) * PRICES.lambdaPerGbSecond + (invocations / 1e6) * PRICES.lambdaPerMillionRequests;
  // The dearer of the cold status calls, half-way or at the end.
  const status = Math.max(requestCost(r.midJobStatusCalls[0]?.requests ?? {}), requestCost(r.statusCalls[0]?.requests ?? {}));
  const sum = worker + submit + esm + lambda;
  return (
    `${fmt(urls)} URLs = ${fmt(chunks)} chunks of ${DEFAULT_CHUNK_SIZE}: ${usd(sum)} ` +
    `(worker S3/SQS/DynamoDB ${usd(worker)}, submit ${usd(submit)}, event source SQS ${usd(esm)}, ` +
    `Lambda ${usd(lambda)} = ${fmt(overheadGbS, 0)} GB-s measured overhead + ${fmt(fetchGbS, 0)} GB-s fetching at ${REAL_WORLD.meanLatencyMs} ms x concurrency ${REAL_WORLD.concurrency}); ` +
    `one status call ${usd(status)}`
  );
}

const scales = (process.env.BENCH_AWS_SCALES ?? process.env.BENCH_AWS_CHUNKS ?? '20000').split(',').map(Number);
const containers = Number(process.env.BENCH_AWS_CONTAINERS ?? '2');
const harness = await openScaleHarness({ origins: 100, visibilityTimeoutSeconds: 61 });
const reports: ScaleReport[] = [];
try {
  for (const chunks of scales) {
    const report = await harness.run({
      urls: chunks,
      chunkSize: 1,
      options: { timeoutMs: 5_000, bodies: 'none' },
      containers,
      deadlineMs: 60_000,
      statusCalls: 2,
      pauseAtFraction: 0.5,
      readResults: process.env.BENCH_AWS_READ !== '0',
      ...(process.env.BENCH_AWS_BUDGET_S ? { giveUpAfterMs: Number(process.env.BENCH_AWS_BUDGET_S) * 1000 } : {}),
    });
    reports.push(report);
    print(report);
  }
} finally {
  await harness.close();
}

const largest = reports.at(-1)!;
console.log(`\n== cost, us-east-1 list prices ==`);
console.log(`prices: S3 PUT/LIST $${PRICES.s3TierOnePer1000}/1k, GET/HEAD $${PRICES.s3TierTwoPer1000}/1k; SQS $${PRICES.sqsPerMillion}/M; DynamoDB on-demand $${PRICES.dynamoWritePerMillion}/M writes, $${PRICES.dynamoReadPerMillion}/M reads; Lambda $${PRICES.lambdaPerGbSecond}/GB-s + $${PRICES.lambdaPerMillionRequests}/M; HTTP API $${PRICES.httpApiPerMillion}/M (free tiers ignored)`);
const near = (chunks: number) => reports.reduce((best, r) => (Math.abs(r.chunks - chunks) < Math.abs(best.chunks - chunks) ? r : best), largest);
console.log(cost(1_000_000, near(1_000_000 / DEFAULT_CHUNK_SIZE)));
console.log(cost(10_000_000, near(10_000_000 / DEFAULT_CHUNK_SIZE)));
if (process.env.BENCH_AWS_JSON) {
  writeFileSync(process.env.BENCH_AWS_JSON, JSON.stringify(reports.map(({ results, containers: c, ...r }) => ({ ...r, containers: c.map(({ durations, ...x }) => x), results: results && { ...results, indexes: undefined } })), null, 1));
}
