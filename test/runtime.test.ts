import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { openInput } from '../functions/core/input.ts';
import { layout } from '../functions/core/layout.ts';
import { jobStatus } from '../functions/core/status.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { BIN } from './support/cli.ts';
import { FaultyStore } from './support/faulty-store.ts';
import { expectOnePerIndex, readRecords } from './support/jobs.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
useOrigin((started) => (origin = started));

const guard = new AddressGuard({ blockPrivate: false });
const urlsInput = (urls: string[]) => openInput(Readable.from([urls.join('\n')]));

describe('EmbeddedRuntime', () => {
  it('runs a job to its manifest', async () => {
    const runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard });
    runtime.start();
    try {
      const urls = Array.from({ length: 120 }, (_, i) => `${origin.url}/ok?i=${i}`);
      const job = await runtime.submit(await urlsInput(urls), { chunkSize: 25 });
      const manifest = await runtime.waitForJob(job.jobId);
      expect(manifest).toMatchObject({ state: 'completed', total: 120, done: 120, chunks: 5 });
      expectOnePerIndex(await readRecords(runtime.store, job.jobId), 120);
    } finally {
      await runtime.stop();
    }
  });

  it('resumes after a crash: a new runtime on the same folder finishes only the missing chunks', async () => {
    const dataDir = tempDir();
    const first = new EmbeddedRuntime({ dataDir, guard });
    const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/ok?i=${i}`);
    const job = await first.submit(await urlsInput(urls), { chunkSize: 20 });
    // the first process gets one chunk done, then "dies" with its in-memory queue
    const [message] = await first.queue.receive({ max: 1 });
    const { processChunk } = await import('../functions/core/worker.ts');
    await processChunk({ store: first.store, fetcher: first.fetcher }, message!.body);
    await first.fetcher.close();
    const doneBefore = readdirSync(join(dataDir, 'jobs', job.jobId, 'chunks'));
    expect(doneBefore).toHaveLength(1);

    const second = new EmbeddedRuntime({ dataDir, guard });
    expect(await second.recover()).toEqual([job.jobId]);
    expect(second.queue.size).toBe(2);
    second.start();
    try {
      expect(await second.waitForJob(job.jobId)).toMatchObject({ state: 'completed', done: 60 });
      expectOnePerIndex(await readRecords(second.store, job.jobId), 60);
      expect(await second.recover()).toEqual([]);
    } finally {
      await second.stop();
    }
  });

  it('cancels promptly: hanging requests are aborted and every URL gets a record', async () => {
    const runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard });
    runtime.start();
    try {
      const urls = Array.from({ length: 200 }, (_, i) => `${origin.url}/hang?i=${i}`);
      const job = await runtime.submit(await urlsInput(urls), { chunkSize: 20, concurrency: 10, timeoutMs: 60_000 });
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      expect(await runtime.cancel(job.jobId)).toBe(true);
      const manifest = await runtime.waitForJob(job.jobId);
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(manifest).toMatchObject({ state: 'cancelled', total: 200, done: 200, byError: { cancelled: 200 } });
      expectOnePerIndex(await readRecords(runtime.store, job.jobId), 200);
      expect(await runtime.cancel(job.jobId)).toBe(false);
    } finally {
      await runtime.stop();
    }
  });

  it('a chunk that fails every delivery is dead-lettered and still gets chunk_failed records', async () => {
    const dataDir = tempDir();
    const store = new FaultyStore(new LocalStore(dataDir));
    const runtime = new EmbeddedRuntime({ dataDir, store, guard, maxReceiveCount: 2, retryDelayMs: 10 });
    const errors: string[] = [];
    runtime.on('error', (_e, context) => errors.push(context));
    const job = await runtime.submit(await urlsInput([`${origin.url}/ok?1`, `${origin.url}/ok?2`]));
    // Two deliveries, and the final delivery's own fallback, cannot read the chunk's input.
    store.fail('get', /\/input\//, 3);
    runtime.start();
    try {
      const manifest = await runtime.waitForJob(job.jobId);
      expect(manifest).toMatchObject({ state: 'completed', done: 2, failed: 2, byError: { chunk_failed: 2 } });
      expect(runtime.queue.deadLetters).toHaveLength(1);
      expect(errors).toHaveLength(2);
      const records = await readRecords(store, job.jobId);
      expectOnePerIndex(records, 2);
      expect(records[0]!.error!.message).toMatch(/failed on all 2 deliveries/);
    } finally {
      await runtime.stop();
    }
  });
});

describe('worker threads', () => {
  it('a job runs across worker threads; a thread killed mid-chunk loses nothing', async () => {
    const runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard, threads: 2 });
    const progress = { done: 0 };
    runtime.on('progress', (_job, done) => (progress.done += done));
    runtime.start();
    try {
      const urls = Array.from({ length: 300 }, (_, i) => `${origin.url}/delay?ms=50&thread=${i}`);
      const job = await runtime.submit(await urlsInput(urls), { chunkSize: 20, concurrency: 10 });
      for (let i = 0; i < 100 && progress.done < 40; i++) await new Promise((r) => setTimeout(r, 50));
      expect(progress.done).toBeGreaterThan(0);
      await runtime.workerThreads[0]!.worker.terminate(); // really killed, chunks in hand
      const manifest = await runtime.waitForJob(job.jobId);
      expect(manifest).toMatchObject({ state: 'completed', total: 300, done: 300, succeeded: 300 });
      expectOnePerIndex(await readRecords(runtime.store, job.jobId), 300);
    } finally {
      await runtime.stop();
    }
  });
});

describe('a real process killed mid-job', () => {
  it('kill -9 during fanout fetch, then fanout resume: exactly one record per URL, in order', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const file = join(dir, 'urls.txt');
    const total = 400;
    writeFileSync(file, Array.from({ length: total }, (_, i) => `${origin.url}/delay?ms=100&i=${i}`).join('\n'));
    const child = spawn(process.execPath, [BIN, 'fetch', file, '--data-dir', data, '--chunk-size', '40', '--concurrency', '10'], {
      stdio: 'ignore',
    });
    const chunksDir = () => {
      const jobs = existsSync(join(data, 'jobs')) ? readdirSync(join(data, 'jobs')) : [];
      return jobs.length ? join(data, 'jobs', jobs[0]!, 'chunks') : undefined;
    };
    // wait until a few chunks are done, then kill without warning
    for (let i = 0; i < 200; i++) {
      const dirPath = chunksDir();
      if (dirPath && existsSync(dirPath) && readdirSync(dirPath).length >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const jobId = readdirSync(join(data, 'jobs'))[0]!;
    const store = new LocalStore(data);
    expect(await store.exists(layout.manifest(jobId))).toBe(false);
    const partial = await jobStatus(store, jobId);
    expect(partial.chunks.done).toBeGreaterThanOrEqual(2);
    expect(partial.chunks.done).toBeLessThan(10);

    const out = join(dir, 'out.ndjson');
    const resumed = await new Promise<number | null>((resolve) => {
      spawn(process.execPath, [BIN, 'resume', jobId, '--data-dir', data, '--out', out], { stdio: 'ignore' }).on('exit', resolve);
    });
    expect(resumed).toBe(0);
    const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expectOnePerIndex(records, total);
    expect(records.every((r) => r.ok)).toBe(true);
    expect(await jobStatus(store, jobId)).toMatchObject({ state: 'completed', done: total, succeeded: total });
  });
});
