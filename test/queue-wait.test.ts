/**
 * Honest, visible progress (issue 11 item 3): the wait for a connection slot is counted apart from
 * the request latency, summed into status and manifest (every ledger), and the summary says when
 * the per-host limit held the run back.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLedger } from '../functions/aws/dynamo-ledger.ts';
import { addCounts, countRecord, emptyCounts, type Counts } from '../functions/core/counts.ts';
import type { JobMeta } from '../functions/core/job.ts';
import { parseJobOptions } from '../functions/core/options.ts';
import { failedRecord, makeRecord, type FetchRecord } from '../functions/core/record.ts';
import { buildManifest, statusFromManifest, type JobStatus } from '../functions/core/status.ts';
import { createProgress, waitSummary } from '../functions/cli/progress.ts';
import { fanout } from './support/cli.ts';
import { startDynalite, type Dynalite } from './support/dynalite.ts';
import { readRecords } from './support/jobs.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { tempDir } from './support/tmp.ts';

function fetched(durationMs: number, queuedMs: number, index = 0): FetchRecord {
  return makeRecord({
    index, url: 'http://a.test/', id: null, ok: true, status: 200, finalUrl: 'http://a.test/', redirects: 0, headers: {}, bytes: 2,
    truncated: false, sha256: null, attempts: 1, startedAt: new Date(0).toISOString(), durationMs, queuedMs, error: null,
  });
}

describe('counting the wait', () => {
  it('keeps a histogram and the sums of the wait and of the request time; never-fetched records stay out', () => {
    const counts = emptyCounts();
    countRecord(counts, fetched(2, 100));
    countRecord(counts, fetched(4, 300));
    countRecord(counts, failedRecord({ index: 2, url: 'http://a.test/' }, 'cancelled', 'x'));
    expect(counts).toMatchObject({ count: 3, queuedTotalMs: 400, durationTotalMs: 6 });
    expect(Object.values(counts.queued).reduce((a, b) => a + b, 0)).toBe(2);
  });

  it('adds counts written before the wait was counted (old chunk summaries) without losing the new ones', () => {
    const counts = emptyCounts();
    countRecord(counts, fetched(2, 100));
    const old = { count: 1, succeeded: 1, failed: 0, bytes: 1, byStatus: { 200: 1 }, byError: {}, latency: { 10: 1 } } as unknown as Counts;
    const sum = addCounts(addCounts(emptyCounts(), old), counts);
    expect(sum).toMatchObject({ count: 2, queuedTotalMs: 100, durationTotalMs: 2 });
  });

  it('shows p50/p95/p99 of the wait and the summed seconds in the manifest and the status built from it', () => {
    const counts = emptyCounts();
    for (let i = 0; i < 100; i++) countRecord(counts, fetched(1, 50, i));
    const job: JobMeta = { jobId: '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f', createdAt: new Date(0).toISOString(), options: parseJobOptions({}), total: 100, chunks: 1 };
    const manifest = buildManifest(job, { counts, chunksDone: 1, lostChunks: [], updatedAt: null }, false);
    expect(manifest.queuedMs.p50).toBeCloseTo(50, -1);
    expect(manifest).toMatchObject({ queuedSeconds: 5, durationSeconds: 0.1 });
    const status = statusFromManifest(job, manifest);
    expect(status).toMatchObject({ queuedSeconds: 5, durationSeconds: 0.1, queuedMs: manifest.queuedMs });
    // A manifest from before: the fields are there, empty.
    const { queuedMs: _, queuedSeconds: __, durationSeconds: ___, ...older } = manifest;
    expect(statusFromManifest(job, older as typeof manifest)).toMatchObject({ queuedMs: { p50: null }, queuedSeconds: 0, durationSeconds: 0 });
  });
});

describe('progress lines without a terminal', () => {
  it('add the connection wait while it holds the run back, and nothing otherwise', async () => {
    expect(waitSummary({ queuedMs: { p50: 12 }, queuedSeconds: 9, durationSeconds: 2 })).toBe('connection wait p50 12 ms (--per-host holds it back)');
    expect(waitSummary({ queuedMs: { p50: 1 }, queuedSeconds: 1, durationSeconds: 2 })).toBe('');
    expect(waitSummary({ queuedMs: { p50: null }, queuedSeconds: 0, durationSeconds: 0 })).toBe('');
    let written = '';
    const stream = { write: (text: string) => ((written += text), true) } as unknown as NodeJS.WriteStream;
    const progress = createProgress(10, 'lines', { stream, lineEveryMs: 5, wait: async () => waitSummary({ queuedMs: { p50: 12 }, queuedSeconds: 9, durationSeconds: 2 }) });
    progress.update(4, 0);
    for (let i = 0; i < 200 && !written.includes('\n'); i++) await new Promise((r) => setTimeout(r, 5));
    progress.stop();
    expect(written.split('\n')[0]).toMatch(/^fanout: 4\/10 done \(40%\), \d+ URLs\/s, failed 0, connection wait p50 12 ms \(--per-host holds it back\)$/);
  });
});

describe('the DynamoDB ledger', () => {
  let dynamo: Dynalite;
  beforeAll(async () => {
    dynamo = await startDynalite();
    await dynamo.createLedgerTable('ledger-wait');
  });
  afterAll(async () => dynamo.close());

  it('sums the wait of its chunks like the other counters', async () => {
    const ledger = new DynamoLedger(dynamo.client().client, 'ledger-wait', { shardSize: 2 });
    const job: JobMeta = { jobId: 'W', createdAt: new Date(0).toISOString(), options: parseJobOptions({}), total: 4, chunks: 2 };
    const a = emptyCounts();
    countRecord(a, fetched(1.5, 120.3));
    countRecord(a, fetched(2.5, 0.2));
    const b = emptyCounts();
    countRecord(b, fetched(3, 40));
    await ledger.recordChunk(job, 0, a);
    await ledger.recordChunk(job, 0, a); // a redelivery counts nothing
    await ledger.recordChunk(job, 1, b);
    const { counts } = await ledger.progress('W');
    const expected = addCounts(addCounts(emptyCounts(), a), b);
    expect(counts.queued).toEqual(expected.queued);
    expect(counts.queuedTotalMs).toBeCloseTo(160.5, 5);
    expect(counts.durationTotalMs).toBeCloseTo(7, 5);
  });
});

describe('fanout fetch of one host with the default --per-host', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    // Answers at once: any latency beyond a millisecond or two is fanout's own.
    server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => new Promise<void>((resolve) => server.close(() => resolve())));

  it('reports request latency near the origin\'s, the wait apart, and names --per-host in the summary', async () => {
    const dir = tempDir();
    const list = join(dir, 'list.txt');
    const total = 1_000;
    writeFileSync(list, Array.from({ length: total }, (_, i) => `${url}/r?i=${i}`).join('\n') + '\n');
    const dataDir = join(dir, 'data');
    // One chunk, so one worker holds all 64 requests in flight against the host's 8 connections.
    const run = await fanout(['fetch', list, '--data-dir', dataDir, '--chunk-size', String(total), '--bodies', 'none', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const status = JSON.parse(run.stdout) as JobStatus;
    expect(status).toMatchObject({ state: 'completed', succeeded: total });
    // Before: p50 374 ms for such an origin, the wait counted in the latency.
    expect(status.latencyMs.p50!).toBeLessThan(20);
    expect(status.queuedMs.p50!).toBeGreaterThan(0);
    expect(status.queuedSeconds).toBeGreaterThan(status.durationSeconds);
    // With --json the summary goes to stderr.
    expect(run.stderr).toMatch(/latency: p50 [\d.]+ ms, .* \(the requests, without the wait for a connection\)/);
    expect(run.stderr).toMatch(/waited for a connection: p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms; [\d.]+ s in all \(requests: [\d.]+ s in all\)/);
    expect(run.stderr).toContain('most of the time was spent waiting for a connection to the same host: raise --per-host (now 8)');

    const records = await readRecords(new LocalStore(dataDir), status.jobId);
    expect(records).toHaveLength(total);
    expect(records.filter((r) => r.queuedMs > 0).length).toBeGreaterThan(total / 2);
    const summed = records.reduce((sum, r) => sum + r.queuedMs, 0) / 1000;
    expect(status.queuedSeconds).toBeCloseTo(summed, 0);
  });
});
