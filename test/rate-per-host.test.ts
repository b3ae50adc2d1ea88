/**
 * The job option `ratePerHost`, against nginx: each response carries nginx's own clock
 * (`X-Msec: $msec`), so the spacing is measured by the server, not by the client that makes it.
 * Only lower bounds are asserted (the limiter can never be faster; a loaded machine only slower).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { OriginRate } from '../functions/core/engine/rate.ts';
import { parseJobOptions, type JobOptionsInput } from '../functions/core/options.ts';
import type { FetchRecord } from '../functions/core/record.ts';
import { fanout } from './support/cli.ts';
import { startNginx, type RealServer } from './support/real-servers.ts';
import { tempDir } from './support/tmp.ts';

/** The server's clock when it answered, in milliseconds. */
const served = (record: FetchRecord) => Number(record.headers['x-msec']) * 1000;
/** Gaps between consecutive answers, in the server's order. */
const gaps = (times: number[]) => [...times].sort((a, b) => a - b).flatMap((t, i, all) => (i === 0 ? [] : [t - all[i - 1]!]));

describe('ratePerHost, with nginx clocking the arrivals', () => {
  const root = tempDir();
  let nginx: RealServer;

  beforeAll(async () => {
    writeFileSync(join(root, 'page.txt'), 'hello');
    nginx = await startNginx({ root, server: 'add_header X-Msec $msec always;' });
  });
  afterAll(() => nginx?.stop());

  function open() {
    const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
    let index = 0;
    return {
      close: () => fetcher.close(),
      fetch: (url: string, options: JobOptionsInput) => fetcher.fetch({ index: index++, url }, parseJobOptions({ retries: 0, ...options })),
    };
  }

  it('starts at most N requests per second per origin; other origins keep their own pace', async () => {
    const engine = open();
    try {
      const a = nginx.url; // 127.0.0.1
      const b = nginx.url.replace('127.0.0.1', 'localhost'); // another origin, same server
      // 10 requests per origin at 5/s, all handed over at once; a 1 s deadline, which the wait
      // for a token does not count toward (the last one waits 1.8 s)
      const options = { ratePerHost: 5, timeoutMs: 1_000, concurrency: 64 };
      const results = await Promise.all(
        [a, b].flatMap((origin) => Array.from({ length: 10 }, (_, i) => engine.fetch(`${origin}/page.txt?${i}`, options))),
      );
      expect(results.map((r) => r.record.error)).toEqual(results.map(() => null));
      const times = (origin: string) => results.filter((r) => r.record.url.startsWith(origin)).map((r) => served(r.record));
      for (const origin of [a, b]) {
        const spacing = gaps(times(origin));
        // 9 intervals of 200 ms; the first request's own connect may shorten the first gap
        expect(spacing.reduce((x, y) => x + y, 0), `${origin}: ${spacing.join(', ')}`).toBeGreaterThanOrEqual(1_500);
        expect(Math.min(...spacing.slice(1)), `${origin}: ${spacing.join(', ')}`).toBeGreaterThanOrEqual(100);
      }
      // per origin, not per worker: the second origin did not wait for the first
      expect(Math.min(...times(b))).toBeLessThan(Math.max(...times(a)));
      // the wait is queue time, kept out of durationMs
      const last = results.filter((r) => r.record.url.startsWith(a)).map((r) => r.record.queuedMs ?? 0);
      expect(Math.max(...last)).toBeGreaterThanOrEqual(1_500);
    } finally {
      await engine.close();
    }
  });

  it('counts redirect hops: each hop is a request to its origin', async () => {
    const engine = open();
    const moved = startNginx({ root, server: 'add_header X-Msec $msec always; location = /moved { return 302 /page.txt; }' });
    const server = await moved;
    try {
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: 3 }, (_, i) => engine.fetch(`${server.url}/moved?${i}`, { ratePerHost: 4 })));
      expect(results.map((r) => r.record.redirects)).toEqual([1, 1, 1]);
      expect(server.read('access.log').trim().split('\n')).toHaveLength(6);
      // 6 requests at 4/s (3 of them hops): the last starts >= 1.25 s after the first
      expect(performance.now() - t0).toBeGreaterThanOrEqual(5 * 250);
      expect(gaps(results.map((r) => served(r.record))).every((gap) => gap >= 250 * 0.5)).toBe(true);
    } finally {
      await engine.close();
      await server.stop();
    }
  });

  it('fanout fetch --rate-per-host N; a value that is not a number exits 2', async () => {
    const dir = mkdtempSync(join(root, 'cli-'));
    writeFileSync(join(dir, 'list.txt'), Array.from({ length: 4 }, (_, i) => `${nginx.url}/page.txt?cli=${i}`).join('\n') + '\n');
    const out = join(dir, 'records.ndjson');
    const args = ['fetch', join(dir, 'list.txt'), '--out', out, '--no-progress', '--data-dir', join(dir, 'data'), '--workers', '1'];
    const env = { HTTP_PROXY: '', http_proxy: '' };
    const run = await fanout([...args, '--rate-per-host', '2.5'], { env });
    expect(run.code, run.stderr).toBe(0);
    const records = readFileSync(out, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as FetchRecord);
    const spacing = gaps(records.map(served));
    // 3 intervals of 400 ms
    expect(spacing.reduce((x, y) => x + y, 0), spacing.join(', ')).toBeGreaterThanOrEqual(900);

    const refused = await fanout([...args, '--rate-per-host', 'fast'], { env });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain('--rate-per-host: expected a number');
  });

  it('keeps memory bounded over many origins: idle ones are dropped', () => {
    let now = 0;
    const rate = new OriginRate(5, () => now);
    let started = 0;
    for (let i = 0; i < 20_000; i++) {
      now += 1; // a new origin every millisecond, each used once
      rate.schedule(`https://host-${i}.example`, () => started++);
    }
    expect(started).toBe(20_000);
    // only origins used within the last interval (200 ms) must be kept, plus the sweep's slack
    expect(rate.size).toBeLessThanOrEqual(1_024 + 200);
  });

  it('a request cancelled while it waits gives its turn to the next one, without being sent', () => {
    vi.useFakeTimers();
    try {
      const rate = new OriginRate(1, () => Date.now()); // one per second
      const started: string[] = [];
      const cancelled: string[] = [];
      const job = new AbortController();
      const schedule = (name: string, signal?: AbortSignal) =>
        rate.schedule('https://example.test', () => started.push(name), signal, () => cancelled.push(name));
      schedule('a');
      schedule('b', job.signal);
      schedule('c', job.signal);
      schedule('d');
      job.abort();
      vi.advanceTimersByTime(999);
      expect(started).toEqual(['a']);
      vi.advanceTimersByTime(1);
      // b and c are dropped at their turn; d takes the token they would have used
      expect(started).toEqual(['a', 'd']);
      expect(cancelled).toEqual(['b', 'c']);
      vi.advanceTimersByTime(5_000);
      expect(started).toEqual(['a', 'd']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('ratePerHost is a positive number of requests per second, or null', () => {
    expect(parseJobOptions({}).ratePerHost).toBeNull();
    expect(parseJobOptions({ ratePerHost: 0.5 }).ratePerHost).toBe(0.5);
    expect(() => parseJobOptions({ ratePerHost: 0 })).toThrow(/option "ratePerHost"/);
    expect(() => parseJobOptions({ ratePerHost: '5' })).toThrow(/option "ratePerHost"/);
  });
});
