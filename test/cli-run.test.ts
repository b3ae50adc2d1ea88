/**
 * The CLI as a user runs it: Ctrl-C and SIGTERM interrupt (the job stays resumable, nothing is
 * cancelled), `resume` and `cancel` finish it, the data folder is locked by the process using it,
 * the client commands work on the local folder, and nothing is left behind by bad input.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliBin, fanout, spawnFanout, startServe, until } from './support/cli.ts';
import { expectOnePerIndex } from './support/jobs.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
useOrigin((started) => (origin = started));

const dir = tempDir();

function list(name: string, urls: string[]): string {
  const file = join(dir, name);
  writeFileSync(file, urls.join('\n') + '\n');
  return file;
}

/** Chunks finished (their summaries written) in a data folder's jobs. */
function chunksDone(data: string): string[] {
  const jobs = join(data, 'jobs');
  if (!existsSync(jobs)) return [];
  return readdirSync(jobs).flatMap((job) => (existsSync(join(jobs, job, 'chunks')) ? readdirSync(join(jobs, job, 'chunks')) : []));
}

/** Starts a fetch of slow URLs and interrupts it once some chunks are written. */
async function interruptedFetch(name: string, signal: NodeJS.Signals) {
  const data = join(dir, name);
  const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/delay?ms=150&${name}=${i}`);
  const run = await spawnFanout(['fetch', list(`${name}.txt`, urls), '--data-dir', data, '--chunk-size', '5', '--concurrency', '5', '--workers', '1']);
  await until(() => chunksDone(data).filter((f) => f.endsWith('.json')).length >= 2, 20_000, 'two chunks written');
  run.child.kill(signal);
  const ended = await run.done;
  const jobId = /^fanout: job (\S+): 60 URLs in 12 chunks$/m.exec(ended.stderr)?.[1];
  return { data, ended, jobId: jobId!, urls };
}

function records(stdout: string) {
  return stdout.trim().split('\n').map((line) => JSON.parse(line));
}

describe('interrupt is not cancel', () => {
  it('Ctrl-C stops a fetch (exit 130), keeps its records and says how to resume; resume completes it with no cancelled record', async () => {
    const { data, ended, jobId } = await interruptedFetch('sigint', 'SIGINT');
    expect(ended.code).toBe(130);
    expect(ended.stderr).toContain(`fanout: interrupted; resume with: fanout resume ${jobId} --data-dir ${data}`);
    expect(existsSync(join(data, '.lock'))).toBe(false);
    const partial = await fanout(['status', jobId, '--data-dir', data]);
    const before = JSON.parse(partial.stdout);
    expect(before).toMatchObject({ state: 'running', cancelRequested: false });
    expect(before.done).toBeGreaterThanOrEqual(10);
    expect(before.done).toBeLessThan(60);
    expect(before.byError).toEqual({});

    expect(partial.stderr).toContain(`fanout: no fanout process runs job ${jobId} now; finish it with: fanout resume ${jobId}`);
    const listed = await fanout(['jobs', '--data-dir', data]);
    expect(listed.stdout).toMatch(new RegExp(`^${jobId}  stopped `));
    const watched = await fanout(['status', jobId, '--watch', '--data-dir', data]);
    expect(watched.code).toBe(2);
    expect(watched.stderr).toContain(`job ${jobId} is not running: no fanout process uses ${data}; finish it with: fanout resume ${jobId}`);

    const resumed = await fanout(['resume', jobId, '--data-dir', data]);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`job ${jobId} completed`);
    // The rate and count are this run's, not the whole job's.
    expect(resumed.stdout).toContain(`60 URLs: 60 ok, 0 failed; this run did ${60 - before.done} (`);
    const all = records((await fanout(['results', jobId, '--data-dir', data])).stdout);
    expectOnePerIndex(all, 60);
    expect(all.filter((r) => r.error?.code === 'cancelled')).toEqual([]);
    expect(all.every((r) => r.ok)).toBe(true);
  });

  it('SIGTERM exits 143 with a message that does not speak of Ctrl-C; only `fanout cancel` cancels the rest', async () => {
    const { data, ended, jobId } = await interruptedFetch('sigterm', 'SIGTERM');
    expect(ended.code).toBe(143);
    expect(ended.stderr).toContain(`fanout: interrupted; resume with: fanout resume ${jobId}`);
    expect(ended.stderr).not.toContain('Ctrl-C');

    const cancelled = await fanout(['cancel', jobId, '--data-dir', data]);
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toMatch(new RegExp(`fanout: job ${jobId} cancelled: \\d+ ok, \\d+ failed, \\d+ cancelled of 60`));
    const all = records((await fanout(['results', jobId, '--data-dir', data])).stdout);
    expectOnePerIndex(all, 60);
    const cancelledRecords = all.filter((r) => r.error?.code === 'cancelled').length;
    expect(cancelledRecords).toBeGreaterThan(0);
    expect(cancelledRecords + all.filter((r) => r.ok).length).toBe(60);
    const again = await fanout(['cancel', jobId, '--data-dir', data]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already ended');
  });
});

describe('--out', () => {
  it('grows as chunks complete, in input order, while later chunks are still being fetched', async () => {
    const data = join(dir, 'out');
    const out = join(dir, 'out.ndjson');
    const fast = Array.from({ length: 10 }, (_, i) => `${origin.url}/ok?o=${i}`);
    const slow = Array.from({ length: 10 }, (_, i) => `${origin.url}/hang?o=${i}`);
    const run = await spawnFanout(['fetch', list('out.txt', [...fast, ...slow]), '--data-dir', data, '--out', out, '--chunk-size', '10', '--workers', '1', '--timeout-ms', '60000', '--retries', '0', '--per-host', '32']);
    // (--per-host 32: the hanging URLs, on the same origin, must not hold every connection the fast ones need)
    const lines = () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : []);
    // The second chunk's URLs hang for a minute: the first chunk's records are out long before.
    await until(() => lines().length >= 10 && readFileSync(out, 'utf8').endsWith('\n'), 20_000, 'the first chunk in --out');
    expect(run.child.exitCode).toBeNull();
    run.child.kill('SIGINT');
    expect((await run.done).code).toBe(130);
    expect(lines().map((l) => JSON.parse(l).index)).toEqual(fast.map((_, i) => i));
  });
});

describe('--out on Ctrl-C', () => {
  it('holds every record the job had written when the run was interrupted', async () => {
    const data = join(dir, 'out-sigint');
    const out = join(dir, 'out-sigint.ndjson');
    const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/delay?ms=150&os=${i}`);
    const run = await spawnFanout(['fetch', list('out-sigint.txt', urls), '--data-dir', data, '--out', out, '--chunk-size', '5', '--concurrency', '5', '--workers', '1']);
    // --out is in input order: it holds the chunks done from the first on, up to the first not done.
    const prefix = () => {
      const done = new Set(chunksDone(data).filter((f) => f.endsWith('.json')).map((f) => Number(f.slice(0, 6))));
      let n = 0;
      while (done.has(n)) n++;
      return n;
    };
    await until(() => prefix() >= 3, 20_000, 'the first three chunks written');
    const atSignal = prefix();
    run.child.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code).toBe(130);
    expect(ended.stderr).toMatch(/resume with: fanout resume \S+/);
    const written = readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).index);
    // Chunks may still finish in the moment between the signal and the exit: at least what was done
    // at the signal, at most what was done at the exit, always a whole prefix.
    expect(written).toEqual(Array.from({ length: written.length }, (_, i) => i));
    expect(written.length % 5).toBe(0);
    expect(written.length).toBeGreaterThanOrEqual(atSignal * 5);
    expect(written.length).toBeLessThanOrEqual(prefix() * 5);
  });
});

describe("serve's banner states what jobs may read from its environment", () => {
  it('names the usable variables of FANOUT_HEADER_ENV_VARS and warns, on stderr, of the others', async () => {
    const server = await startServe(['--data-dir', join(dir, 'header-env')], { FANOUT_HEADER_ENV_VARS: 'PARTNER_KEY,FANOUT_TOKEN,MISSING_KEY', PARTNER_KEY: 'k' });
    try {
      await expect.poll(() => server.output()).toContain('fanout serve: warning: FANOUT_HEADER_ENV_VARS lists MISSING_KEY, which is not set: jobs naming it are refused');
      expect(server.output()).toContain('header values from the environment (headerEnv): jobs may name PARTNER_KEY (FANOUT_HEADER_ENV_VARS)');
      expect(server.output()).toContain('fanout serve: warning: FANOUT_HEADER_ENV_VARS lists FANOUT_TOKEN, which jobs may never name');
    } finally {
      await server.stop();
    }
  });
});

describe('the data folder is locked by the process using it', () => {
  it('a second serve or fetch on a folder in use exits 2 naming the holder; after it stops, the folder is free', async () => {
    const data = join(dir, 'locked');
    const server = await startServe(['--data-dir', data]);
    expect(server.output()).toContain('address guard: private, loopback and link-local addresses blocked; --allow-private or FANOUT_ALLOW_CIDRS');
    expect(server.output()).toContain('header values from the environment (headerEnv): jobs may name no environment variable (FANOUT_HEADER_ENV_VARS lists none that is usable)');
    try {
      const fetched = await fanout(['fetch', '-', '--data-dir', data], { stdin: `${origin.url}/ok\n` });
      expect(fetched.code).toBe(2);
      expect(fetched.stderr).toContain(`fanout: the data folder ${data} is in use by fanout serve (pid ${server.child.pid}`);
      const second = await fanout(['serve', '--port', '0', '--data-dir', data]);
      expect(second.code).toBe(2);
      expect(second.stderr).toContain(`in use by fanout serve (pid ${server.child.pid}`);
    } finally {
      await server.stop();
    }
    expect(existsSync(join(data, '.lock'))).toBe(false);
    const after = await fanout(['fetch', '-', '--data-dir', data], { stdin: `${origin.url}/ok\n` });
    expect(after.code).toBe(0);
  });

  it('a lock left by a dead process is taken over, and stale temporary files are removed', async () => {
    const data = join(dir, 'stale');
    mkdirSync(join(data, '.tmp'), { recursive: true });
    writeFileSync(join(data, '.tmp', 'left-by-a-kill'), 'half a result file');
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(data, '.lock'), JSON.stringify({ pid: dead, command: 'fanout fetch', host: (await import('node:os')).hostname(), since: 'then' }));
    const run = await fanout(['fetch', '-', '--data-dir', data], { stdin: `${origin.url}/ok\n` });
    expect(run.code).toBe(0);
    expect(existsSync(join(data, '.tmp', 'left-by-a-kill'))).toBe(false);
    expect(existsSync(join(data, '.lock'))).toBe(false);
  });
});

describe('stopping fanout serve', () => {
  it('a first SIGTERM stops after the chunks in hand, a second at once (143), and the folder is free again', async () => {
    const data = join(dir, 'serve-stop');
    const server = await startServe(['--data-dir', data], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' });
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/hang?s=${i}`);
    const submitted = await fanout(['submit', list('serve-stop.txt', urls), '--api', server.url, '--timeout-ms', '60000']);
    expect(submitted.code).toBe(0);
    await until(() => origin.hits.has('/hang?s=0'), 10_000, 'the first request');
    server.child.kill('SIGTERM');
    await until(() => server.output().includes('stopping after the chunks in hand (SIGTERM again to stop at once)'), 10_000, 'the first stop');
    expect(server.child.exitCode).toBeNull(); // a minute of hanging requests to go
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
    server.child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(existsSync(join(data, '.lock'))).toBe(false);
  });
});

describe('bad input leaves nothing behind', () => {
  it.each([
    ['a non-http line', `${'http://a.test/'}\nftp://b.test/\n`],
    ['an empty list', '# nothing\n'],
  ])('%s: exit 2, no data folder', async (_name, stdin) => {
    const data = join(dir, `bad-${_name.replace(/\W/g, '')}`);
    const run = await fanout(['fetch', '-', '--data-dir', data], { stdin });
    expect(run.code).toBe(2);
    expect(existsSync(data)).toBe(false);
  });

  it('an --out that cannot be written, or that is the input list, is exit 2 before any job is made', async () => {
    const data = join(dir, 'bad-out');
    const missing = await fanout(['fetch', '-', '--data-dir', data, '--out', join(dir, 'no', 'such', 'x.ndjson')], { stdin: `${origin.url}/ok\n` });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--out .*cannot write in/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    const input = list('self.txt', [`${origin.url}/ok`]);
    const self = await fanout(['fetch', input, '--data-dir', data, '--out', input]);
    expect(self.code).toBe(2);
    expect(self.stderr).toContain('is the input list itself');
    expect(readFileSync(input, 'utf8')).toBe(`${origin.url}/ok\n`);
    expect(existsSync(data)).toBe(false);
  });

  it('an existing data folder keeps its jobs and gains no empty folders', async () => {
    const data = join(dir, 'existing');
    mkdirSync(data);
    const run = await fanout(['fetch', '-', '--data-dir', data], { stdin: 'gopher://x.test/\n' });
    expect(run.code).toBe(2);
    expect(readdirSync(data)).toEqual([]);
  });
});

describe('client commands on the local data folder', () => {
  const data = join(dir, 'client');
  let jobId = '';
  beforeAll(async () => {
    const urls = Array.from({ length: 1000 }, (_, i) => `${origin.url}/ok?size=64&i=${i}`);
    const run = await fanout(['fetch', list('client.txt', urls), '--data-dir', data, '--chunk-size', '400']);
    jobId = /^fanout: job (\S+): 1000 URLs in 3 chunks$/m.exec(run.stderr)![1]!;
  });

  it('jobs, status and status --watch read the folder; --watch ends with the summary fetch prints', async () => {
    const jobs = await fanout(['jobs', '--data-dir', data]);
    expect(jobs.stdout).toMatch(new RegExp(`^${jobId}  completed\\s+1000/1000`));
    const status = JSON.parse((await fanout(['status', jobId], { env: { FANOUT_DATA_DIR: data } })).stdout);
    expect(status).toMatchObject({ jobId, state: 'completed', done: 1000 });
    const watched = await fanout(['status', jobId, '--watch', '--data-dir', data]);
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(new RegExp(`^fanout: job ${jobId} completed in [\\d.]+ s\\n  1000 URLs: 1000 ok, 0 failed`));
    expect(watched.stdout).toContain('(3 result files)');
  });

  it('results | head -1 exits 0 without a word on EPIPE', async () => {
    const piped = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${await cliBin()}" results ${jobId} --data-dir "${data}" | head -1`], {
      encoding: 'utf8',
      env: { ...process.env, FANOUT_API: '' },
    });
    expect(piped.stderr).toBe('');
    expect(piped.status).toBe(0);
    expect(JSON.parse(piped.stdout)).toMatchObject({ index: 0, ok: true });
  });

  it('results filters locally as the API does', async () => {
    const none = await fanout(['results', jobId, '--data-dir', data, '--ok', 'false']);
    expect(none).toMatchObject({ code: 0, stdout: '' });
    const typo = await fanout(['results', jobId, '--data-dir', data, '--error', 'timeuot']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('--error: expected one of invalid_url, blocked');
    const missing = await fanout(['status', '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f', '--data-dir', data]);
    expect(missing.code).toBe(2);
  });
});
