import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fanout } from './support/cli.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
useOrigin((started) => (origin = started));

function jobsIn(dataDir: string): string[] {
  const jobs = join(dataDir, 'jobs');
  return existsSync(jobs) ? readdirSync(jobs) : [];
}

describe('fanout fetch: bad input and usage (exit 2, nothing created)', () => {
  it('names the line of a non-http URL and leaves no job folder', async () => {
    const dir = tempDir();
    const file = join(dir, 'urls.txt');
    writeFileSync(file, `${origin.url}/ok\n# comment\nftp://files.test/x\n`);
    const run = await fanout(['fetch', file, '--data-dir', join(dir, 'data')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('fanout: line 3: unsupported scheme "ftp:" in "ftp://files.test/x": only http and https URLs are fetched');
    expect(jobsIn(join(dir, 'data'))).toEqual([]);
  });

  it.each([
    [['--concurrency', '0'], '--concurrency: expected a whole number from 1 to 10000, got "0"'],
    [['--concurrency', '-1'], '--concurrency: expected a whole number from 1 to 10000, got "-1"'],
    [['--concurrency', 'many'], '--concurrency: expected a whole number from 1 to 10000, got "many"'],
    [['--bodies', 'some'], '--bodies: Invalid option'],
    [['--header', 'no-colon'], '--header: expected "name: value"'],
    [['--header', 'x: a\r\nInjected: 1'], '--header'],
    [['--callback-url', 'ftp://x.test/'], '--callback-url'],
    [['--format', 'yaml'], '--format: expected one of'],
  ])('refuses %j', async (flags, message) => {
    const dir = tempDir();
    const file = join(dir, 'urls.txt');
    writeFileSync(file, `${origin.url}/ok\n`);
    const run = await fanout(['fetch', file, '--data-dir', join(dir, 'data'), ...flags]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
    expect(jobsIn(join(dir, 'data'))).toEqual([]);
  });

  it('refuses an unknown flag, a missing file and an empty list', async () => {
    const dir = tempDir();
    const unknown = await fanout(['fetch', 'x.txt', '--concurency', '3']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown option '--concurency'");
    const missing = await fanout(['fetch', join(dir, 'nope.txt'), '--data-dir', join(dir, 'data')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file');
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '# only a comment\n\n');
    const none = await fanout(['fetch', empty, '--data-dir', join(dir, 'data')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('the input holds no URL');
    expect(jobsIn(join(dir, 'data'))).toEqual([]);
  });

  it('says what a missing job is on resume', async () => {
    const bad = await fanout(['resume', '../etc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('malformed job id');
  });
});

describe('fanout fetch: the main job', () => {
  it('fetches 10,000 loopback URLs into 10,000 records in input order, laid out as the contract says', async () => {
    const dir = tempDir();
    const file = join(dir, 'urls.txt');
    const urls = Array.from({ length: 10_000 }, (_, i) => `${origin.url}/ok?size=${i % 50}&i=${i}`);
    writeFileSync(file, urls.join('\n') + '\n');
    const out = join(dir, 'out.ndjson');
    const data = join(dir, 'data');
    const run = await fanout(['fetch', file, '--out', out, '--data-dir', data, '--chunk-size', '1000']);
    expect(run.code).toBe(0);
    // Without a terminal: the job id first, so a user whose run dies knows what to resume.
    expect(run.stderr).toMatch(/^fanout: job [0-9a-f-]{36}: 10000 URLs in 10 chunks\n/);
    expect(run.stderr).not.toContain('warning');
    expect(run.stdout).toMatch(/completed in/);
    expect(run.stdout).toContain('10000 URLs: 10000 ok, 0 failed');
    expect(run.stdout).toMatch(/latency: p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms/);

    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(10_000);
    lines.forEach((line, i) => {
      const record = JSON.parse(line);
      if (record.index !== i || record.url !== urls[i] || record.ok !== true || record.bytes !== i % 50) {
        throw new Error(`record ${i} is wrong: ${line}`);
      }
    });

    const [jobId] = jobsIn(data);
    const jobDir = join(data, 'jobs', jobId!);
    // A chunk that ran longer than LOOP_DEFAULTS.partEveryMs kept part files while it ran; they are
    // deleted once its result file holds them (an empty parts/ folder may stay).
    const parts = join(jobDir, 'parts');
    if (existsSync(parts)) expect(readdirSync(parts)).toEqual([]);
    expect(readdirSync(jobDir).filter((d) => d !== 'parts').sort()).toEqual(['chunks', 'input', 'job.json', 'manifest.json', 'results', 'started.json']);
    expect(readdirSync(join(jobDir, 'results'))).toEqual(
      Array.from({ length: 10 }, (_, i) => `${String(i).padStart(6, '0')}.ndjson.gz`),
    );
    const manifest = JSON.parse(readFileSync(join(jobDir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ state: 'completed', total: 10_000, done: 10_000, succeeded: 10_000, chunks: 10 });
    expect(JSON.parse(readFileSync(join(jobDir, 'job.json'), 'utf8'))).toMatchObject({
      jobId,
      total: 10_000,
      chunks: 10,
      options: { chunkSize: 1000, concurrency: 64 },
    });
  });

  it('reads stdin, passes every flag, and prints the final status as JSON with --json', async () => {
    const dir = tempDir();
    const stdin = [`${origin.url}/echo`, `${origin.url}/status?code=503`, `${origin.url}/redirect?n=2`].join('\n');
    const run = await fanout(
      [
        'fetch', '-', '--json', '--data-dir', join(dir, 'data'),
        '--method', 'PUT', '--header', 'x-token: abc', '--data', 'payload', '--retries', '1',
        '--retry-base-ms', '5', '--max-redirects', '1', '--timeout-ms', '4000', '--user-agent', 'tester/9',
        '--bodies', 'inline', '--max-body-bytes', '4096', '--concurrency', '2', '--per-host', '1',
        '--out', join(dir, 'out.ndjson'),
      ],
      { stdin },
    );
    expect(run.code).toBe(0);
    const status = JSON.parse(run.stdout);
    expect(status).toMatchObject({ state: 'completed', total: 3, done: 3, succeeded: 1, failed: 2, byStatus: { 200: 1, 503: 1, 302: 1 } });
    expect(status.byError).toEqual({ too_many_redirects: 1 });
    expect(run.stderr).toContain('3 URLs: 1 ok, 2 failed');
    expect(run.stderr.split('\n')[0]).toMatch(/^fanout: job \S+: 3 URLs in 1 chunk$/);
    const [echo, unavailable, redirect] = readFileSync(join(dir, 'out.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const echoed = JSON.parse(echo.body);
    expect(echoed).toMatchObject({ method: 'PUT', body: 'payload', headers: { 'x-token': 'abc', 'user-agent': 'tester/9' } });
    expect(unavailable).toMatchObject({ status: 503, attempts: 2 });
    expect(redirect).toMatchObject({ status: 302, redirects: 1, error: { code: 'too_many_redirects' } });
  });

  it('--block-private turns the address guard on; FANOUT_ALLOW_CIDRS opens exceptions', async () => {
    const dir = tempDir();
    const blocked = await fanout(['fetch', '-', '--json', '--data-dir', join(dir, 'a'), '--block-private'], { stdin: `${origin.url}/ok\n` });
    expect(blocked.code).toBe(0);
    expect(JSON.parse(blocked.stdout).byError).toEqual({ blocked: 1 });
    const allowed = await fanout(['fetch', '-', '--json', '--data-dir', join(dir, 'b'), '--block-private'], {
      stdin: `${origin.url}/ok\n`,
      env: { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' },
    });
    expect(JSON.parse(allowed.stdout)).toMatchObject({ succeeded: 1, byError: {} });
  });

  it('writes records to stdout with --out - and the summary to stderr', async () => {
    const dir = tempDir();
    const run = await fanout(['fetch', '-', '--out', '-', '--data-dir', join(dir, 'data')], { stdin: `${origin.url}/ok?size=1\n` });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ index: 0, ok: true, body: 'x' });
    expect(run.stderr).toContain('1 URL: 1 ok');
  });

  it('--quiet leaves stderr empty; the summary says "1 result file" and no status line when nothing responded', async () => {
    const dir = tempDir();
    const run = await fanout(['fetch', '-', '--quiet', '--data-dir', join(dir, 'data'), '--block-private'], { stdin: `${origin.url}/ok\n` });
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('1 URL: 0 ok, 1 failed');
    expect(run.stdout).toContain('(1 result file)');
    expect(run.stdout).not.toMatch(/status: -|latency: p50 -/);
    expect(run.stdout).toContain('errors: blocked 1');
    // With --json the summary would go to stderr: --quiet leaves it out, stdout holds the status alone.
    const json = await fanout(['fetch', '-', '--quiet', '--json', '--data-dir', join(dir, 'data')], { stdin: `${origin.url}/ok\n` });
    expect(json.stderr).toBe('');
    expect(JSON.parse(json.stdout)).toMatchObject({ state: 'completed', total: 1 });
  });

  it('uses FANOUT_DATA_DIR, then ./fanout-data', async () => {
    const dir = tempDir();
    await fanout(['fetch', '-'], { stdin: `${origin.url}/ok\n`, env: { FANOUT_DATA_DIR: join(dir, 'env-data') } });
    expect(jobsIn(join(dir, 'env-data'))).toHaveLength(1);
    await fanout(['fetch', '-'], { stdin: `${origin.url}/ok\n`, cwd: dir, env: { FANOUT_DATA_DIR: '' } });
    expect(jobsIn(join(dir, 'fanout-data'))).toHaveLength(1);
  });
});

describe('fanout help', () => {
  it('lists exit codes and environment variables', async () => {
    const help = await fanout(['--help']);
    expect(help.code).toBe(0);
    for (const text of ['Exit codes:', '130', '143', 'FANOUT_DATA_DIR', 'FANOUT_API', 'FANOUT_TOKEN', 'FANOUT_ALLOW_PRIVATE',
      'FANOUT_ALLOW_CIDRS', 'FANOUT_SCHEDULES', 'FANOUT_CALLBACK_SECRET', 'FANOUT_DEBUG']) {
      expect(help.stdout).toContain(text);
    }
  });

  it('states each option\'s range and default as the options schema has them', async () => {
    const { DEFAULT_OPTIONS, jobOptionsSchema } = await import('../functions/core/options.ts');
    const { jobFlags } = await import('../functions/cli/job-flags.ts');
    const help = (await fanout(['fetch', '--help'])).stdout.replace(/\s+/g, ' ');
    const flags = jobFlags();
    expect(flags.map((f) => f.option)).toEqual(expect.arrayContaining(['concurrency', 'perHost', 'headers', 'body', 'bodies', 'callbackUrl']));
    for (const flag of flags) {
      expect(help).toContain(flag.flag);
      if (flag.kind.type !== 'number') continue;
      const fallback = (DEFAULT_OPTIONS as Record<string, unknown>)[flag.option];
      if (fallback === null) {
        // An optional number (ratePerHost): its range, and no default to state.
        expect(help).toContain(`(${flag.kind.int ? 'whole number' : 'number'} from ${flag.kind.min} to ${flag.kind.max})`);
        continue;
      }
      const schema = jobOptionsSchema.shape[flag.option as 'concurrency'];
      const inner = schema.unwrap() as unknown as { minValue: number; maxValue: number };
      expect(help).toContain(`whole number from ${inner.minValue} to ${inner.maxValue}; default ${fallback})`);
    }
  });
});
