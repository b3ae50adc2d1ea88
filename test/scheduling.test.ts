// Scheduling across chunks (Slots, ByteBudget, inOrder) through the embedded runtime: one record per
// URL in order, a job's concurrency never exceeded at the origin. (From an attack on this round's scheduler.)
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { openInput } from '../functions/core/input.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { expectOnePerIndex, readRecords } from './support/jobs.ts';
import { tempDir } from './support/tmp.ts';

let server: Server;
let base = '';
const inFlight = new Map<string, number>();
const peak = new Map<string, number>();
beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const job = u.searchParams.get('job') ?? '';
    const n = (inFlight.get(job) ?? 0) + 1;
    inFlight.set(job, n);
    peak.set(job, Math.max(peak.get(job) ?? 0, n));
    const delay = Number(u.searchParams.get('d') ?? 0);
    const size = Number(u.searchParams.get('size') ?? 0);
    setTimeout(() => {
      inFlight.set(job, inFlight.get(job)! - 1);
      res.end(size ? 'x'.repeat(size) : 'ok');
    }, delay);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function runJob(runtime: EmbeddedRuntime, urls: string[], options: Record<string, unknown>) {
  const job = await runtime.submit(await openInput(Readable.from([urls.join('\n') + '\n'])), options);
  return job;
}

describe('scheduling across chunks', () => {
  it('concurrency 3, chunkSize 1, 400 chunks, slow heads: one record per URL in order; peak <= 3', async () => {
    const dir = tempDir();
    const runtime = new EmbeddedRuntime({ dataDir: dir, guard: new AddressGuard({ blockPrivate: false }), partEveryMs: 20 });
    const urls = Array.from({ length: 400 }, (_, i) => `${base}/?job=a&i=${i}&d=${i % 97 === 0 ? 200 : i % 5}`);
    const job = await runJob(runtime, urls, { concurrency: 3, perHost: 50, chunkSize: 1, retries: 0, timeoutMs: 5000 });
    runtime.start();
    const m = await runtime.waitForJob(job.jobId);
    await runtime.stop();
    expect(m.done).toBe(400);
    expectOnePerIndex(await readRecords(runtime.store, job.jobId), 400);
    expect(peak.get('a')).toBeLessThanOrEqual(3);
  }, 120_000);

  it('two jobs at once, chunkSize 7, concurrency 2 and 5, part cuts every 5 ms', async () => {
    const dir = tempDir();
    const runtime = new EmbeddedRuntime({ dataDir: dir, guard: new AddressGuard({ blockPrivate: false }), partEveryMs: 5 });
    const a = Array.from({ length: 350 }, (_, i) => `${base}/?job=b&i=${i}&d=${i % 7 === 0 ? 30 : i % 3}`);
    const b = Array.from({ length: 350 }, (_, i) => `${base}/?job=c&i=${i}&d=${i % 11 === 0 ? 40 : i % 4}`);
    const ja = await runJob(runtime, a, { concurrency: 2, perHost: 50, chunkSize: 7, retries: 0 });
    const jb = await runJob(runtime, b, { concurrency: 5, perHost: 50, chunkSize: 7, retries: 0 });
    runtime.start();
    await Promise.all([runtime.waitForJob(ja.jobId), runtime.waitForJob(jb.jobId)]);
    await runtime.stop();
    expectOnePerIndex(await readRecords(runtime.store, ja.jobId), 350);
    expectOnePerIndex(await readRecords(runtime.store, jb.jobId), 350);
    expect(peak.get('b')).toBeLessThanOrEqual(2);
    expect(peak.get('c')).toBeLessThanOrEqual(5);
  }, 120_000);

  it('cancel mid-chunk: every URL one record, in order', async () => {
    const dir = tempDir();
    const runtime = new EmbeddedRuntime({ dataDir: dir, guard: new AddressGuard({ blockPrivate: false }), partEveryMs: 10 });
    const urls = Array.from({ length: 400 }, (_, i) => `${base}/?job=d&i=${i}&d=${i === 0 ? 3000 : 20}`);
    const job = await runJob(runtime, urls, { concurrency: 4, perHost: 50, chunkSize: 50, retries: 0 });
    runtime.start();
    await new Promise((r) => setTimeout(r, 300));
    await runtime.cancel(job.jobId);
    const m = await runtime.waitForJob(job.jobId);
    await runtime.stop();
    const records = await readRecords(runtime.store, job.jobId);
    expectOnePerIndex(records, 400);
    expect(m.done).toBe(400);
    expect(peak.get('d')).toBeLessThanOrEqual(4);
  }, 60_000);
});
