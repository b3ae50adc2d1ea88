import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanout, startServe, type ServeProcess } from './support/cli.ts';
import { expectOnePerIndex } from './support/jobs.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin; // 127.0.0.1: allowed by FANOUT_ALLOW_CIDRS
let forbidden: Origin; // 127.0.0.2: private and not allowed
let server: ServeProcess;
const dir = tempDir();

beforeAll(async () => {
  origin = await startOrigin('127.0.0.1');
  forbidden = await startOrigin('127.0.0.2');
  server = await startServe(['--data-dir', join(dir, 'data'), '--workers', '2'], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' });
});
afterAll(async () => {
  await server.stop();
  await origin.close();
  await forbidden.close();
});

const api = () => ['--api', server.url];

function listFile(name: string, urls: string[]): string {
  const file = join(dir, name);
  writeFileSync(file, urls.join('\n') + '\n');
  return file;
}

describe('fanout serve, driven by the CLI clients and a real HTTP client', () => {
  it('submit, status --watch, results: every record, in order', async () => {
    const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/ok?size=${i}&i=${i}`);
    const submitted = await fanout(['submit', listFile('a.txt', urls), ...api(), '--chunk-size', '7']);
    expect(submitted.stderr).toContain('60 URLs in 9 chunks');
    expect(submitted.code).toBe(0);
    const jobId = submitted.stdout.trim();
    const watched = await fanout(['status', jobId, '--watch', '--json', ...api()]);
    expect(watched.code).toBe(0);
    expect(JSON.parse(watched.stdout)).toMatchObject({ state: 'completed', total: 60, done: 60, succeeded: 60 });
    const results = await fanout(['results', jobId, ...api()]);
    const records = results.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expectOnePerIndex(records, 60);
    expect(records.map((r) => r.bytes)).toEqual(urls.map((_, i) => i));
    const failedOnly = await fanout(['results', jobId, '--ok', 'false', ...api()]);
    expect(failedOnly.stdout).toBe('');
    const jobs = await fanout(['jobs', '--json', ...api()]);
    expect(JSON.parse(jobs.stdout).jobs[0].jobId).toBe(jobId);
  });

  it('streams results with chunked transfer, not a buffered body', async () => {
    const urls = Array.from({ length: 2000 }, (_, i) => `${origin.url}/ok?size=100&s=${i}`);
    const { stdout } = await fanout(['submit', listFile('big.txt', urls), '--wait', ...api(), '--chunk-size', '100']);
    const { jobId } = JSON.parse(stdout);
    const res = await request(`${server.url}/jobs/${jobId}/results`);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(res.headers['content-length']).toBeUndefined();
    let lines = 0;
    for await (const chunk of res.body) lines += (chunk.toString().match(/\n/g) ?? []).length;
    expect(lines).toBe(2000);
  });

  it('submits through an upload slot', async () => {
    const urls = Array.from({ length: 25 }, (_, i) => `${origin.url}/ok?u=${i}`);
    const run = await fanout(['submit', listFile('up.txt', urls), '--upload', '--wait', ...api()]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('"done": 25');
  });

  it('cancel stops a job of hanging URLs within seconds, with a record for each', async () => {
    const urls = Array.from({ length: 200 }, (_, i) => `${origin.url}/hang?c=${i}`);
    const { stdout } = await fanout(['submit', listFile('hang.txt', urls), ...api(), '--timeout-ms', '60000', '--chunk-size', '50']);
    const jobId = stdout.trim();
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const cancelled = await fanout(['cancel', jobId, ...api()]);
    expect(cancelled.code).toBe(0);
    const watched = await fanout(['status', jobId, '--watch', '--json', ...api()]);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(JSON.parse(watched.stdout)).toMatchObject({ state: 'cancelled', done: 200, byError: { cancelled: 200 } });
    const again = await fanout(['cancel', jobId, ...api()]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already ended');
  });

  it('the guard: the allowed origin works, a redirect from it to a private one is blocked, and so is the private one', async () => {
    const urls = [
      `${origin.url}/ok`,
      `${origin.url}/to?location=${encodeURIComponent(`${forbidden.url}/ok`)}`,
      `${forbidden.url}/ok`,
      `http://[::1]:${forbidden.port}/ok`,
      `http://[::ffff:127.0.0.2]:${forbidden.port}/ok`,
    ];
    const { stdout } = await fanout(['submit', listFile('guard.txt', urls), '--wait', ...api()]);
    const status = JSON.parse(stdout);
    expect(status).toMatchObject({ done: 5, succeeded: 1, byError: { blocked: 4 } });
    expect(forbidden.hits.size).toBe(0);
  });

  it('reports API problems with exit 2 and the API detail', async () => {
    const bad = await fanout(['submit', listFile('bad.txt', ['http://a.test/', 'gopher://b.test/']), ...api()]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('line 2: unsupported scheme "gopher:"');
    const missing = await fanout(['status', '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f', ...api()]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no job');
  });
});

describe('fanout serve security and durability', () => {
  it('refuses to listen beyond loopback without a token', async () => {
    const run = await fanout(['serve', '--host', '0.0.0.0', '--port', '0', '--data-dir', join(dir, 'x')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('refusing to listen on 0.0.0.0 without a token');
  });

  it('with FANOUT_TOKEN, clients need the token', async () => {
    const secured = await startServe(['--data-dir', join(dir, 'secured')], { FANOUT_TOKEN: 's3cret-token' });
    try {
      const denied = await fanout(['jobs', '--api', secured.url]);
      expect(denied.code).toBe(2);
      expect(denied.stderr).toContain('Bearer');
      const allowed = await fanout(['jobs', '--api', secured.url, '--token', 's3cret-token']);
      expect(allowed.code).toBe(0);
      expect(secured.output()).not.toContain('s3cret-token');
    } finally {
      await secured.stop();
    }
  });

  it('a serve killed mid-job resumes the job when it starts again', async () => {
    const data = join(dir, 'restart');
    const first = await startServe(['--data-dir', data], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' });
    const urls = Array.from({ length: 120 }, (_, i) => `${origin.url}/delay?ms=100&r=${i}`);
    const { stdout } = await fanout(['submit', listFile('restart.txt', urls), '--api', first.url, '--chunk-size', '10', '--concurrency', '8']);
    const jobId = stdout.trim();
    await new Promise((r) => setTimeout(r, 700));
    await first.stop('SIGKILL');
    const second = await startServe(['--data-dir', data], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' });
    try {
      const watched = await fanout(['status', jobId, '--watch', '--json', '--api', second.url]);
      expect(JSON.parse(watched.stdout)).toMatchObject({ state: 'completed', total: 120, done: 120, succeeded: 120 });
      const results = await fanout(['results', jobId, '--api', second.url]);
      expectOnePerIndex(results.stdout.trim().split('\n').map((l) => JSON.parse(l)), 120);
    } finally {
      await second.stop();
    }
  });
});
