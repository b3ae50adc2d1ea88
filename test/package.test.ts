/**
 * The package as a user gets it: `npm pack`'s tarball installed into a temporary prefix (offline:
 * it has no dependencies), then run from an unrelated folder: no tsx, no esbuild, no node_modules
 * of the checkout. fetch (with worker threads), serve (dashboard and offline API docs) and the
 * client commands.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../functions/core/version.ts';
import { runCommand, spawnFanout, startServe, until, type Run } from './support/cli.ts';
import { expectOnePerIndex } from './support/jobs.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = tempDir('fanout-package-');
const prefix = join(dir, 'prefix');
const home = join(dir, 'home'); // an unrelated folder: where the user runs fanout
const bin = join(prefix, 'bin', 'fanout');
const installed = join(prefix, 'lib', 'node_modules', 'fanout');
let origin: Origin;
let installOutput = '';

/** Runs the installed command from the unrelated folder. */
function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCommand(bin, args, { cwd: home, env: { ...process.env, FANOUT_DATA_DIR: '', FANOUT_API: '', FANOUT_TOKEN: '', ...env } });
}

beforeAll(async () => {
  origin = await startOrigin();
  execFileSync('mkdir', ['-p', home]);
  // `npm pack` runs `prepack`, which builds build/cli from the sources.
  const packed = execFileSync('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: root, encoding: 'utf8' }).trim().split('\n').at(-1)!;
  const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, join(dir, packed), '--offline', '--no-audit', '--no-fund'], {
    cwd: home,
    encoding: 'utf8',
  });
  installOutput = install.stdout + install.stderr;
  if (install.status !== 0) throw new Error(`npm install failed: ${installOutput}`);
}, 60_000);
afterAll(() => origin.close());

describe('the installed package', () => {
  it('installs offline, with no install script for npm to warn about', () => {
    expect(installOutput).toContain('added 1 package');
    expect(installOutput).not.toMatch(/install-scripts|warn/);
  });

  it('ships compiled JavaScript and nothing it does not need, and has no dependencies', () => {
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
    expect(manifest.private).toBeUndefined();
    expect(manifest.dependencies ?? {}).toEqual({});
    expect(readdirSync(installed).sort()).toEqual(['README.md', 'bin', 'build', 'package.json']);
    expect(existsSync(join(installed, 'node_modules'))).toBe(false);
    expect(existsSync(join(installed, 'build', 'cli', 'thread-worker.mjs'))).toBe(true);
    const files = readdirSync(join(installed, 'build', 'cli'));
    expect(files.filter((f) => f.endsWith('.ts'))).toEqual([]);
  });

  it('answers --version', async () => {
    const version = await run(['--version']);
    expect(version).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
  });

  it('fetches from an unrelated folder, with worker threads, into ./fanout-data', async () => {
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?size=3&p=${i}`);
    writeFileSync(join(home, 'urls.txt'), urls.join('\n') + '\n');
    const fetched = await run(['fetch', 'urls.txt', '--chunk-size', '10', '--workers', '2', '--out', 'out.ndjson']);
    expect(fetched.stderr).toMatch(/^fanout: job \S+: 30 URLs in 3 chunks\n/);
    expect(fetched.stderr).not.toContain('warning');
    expect(fetched.code).toBe(0);
    expect(fetched.stdout).toContain('30 URLs: 30 ok, 0 failed');
    const records = readFileSync(join(home, 'out.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(records.map((r) => r.index)).toEqual(urls.map((_, i) => i));
    expect(readdirSync(join(home, 'fanout-data', 'jobs'))).toHaveLength(1);
    const jobs = await run(['jobs']);
    expect(jobs.stdout).toMatch(/completed\s+30\/30/);
  });

  it('stops on Ctrl-C keeping what it wrote, and resumes to a complete job with every record fetched', async () => {
    const urls = Array.from({ length: 40 }, (_, i) => `${origin.url}/delay?ms=150&q=${i}`);
    writeFileSync(join(home, 'slow.txt'), urls.join('\n') + '\n');
    const data = join(home, 'interrupted');
    const live = await spawnFanout(['fetch', 'slow.txt', '--data-dir', data, '--chunk-size', '5', '--concurrency', '5', '--workers', '1'], { bin, cwd: home });
    const summaries = () => (existsSync(join(data, 'jobs')) ? readdirSync(join(data, 'jobs')).flatMap((j) => (existsSync(join(data, 'jobs', j, 'chunks')) ? readdirSync(join(data, 'jobs', j, 'chunks')) : [])) : []);
    await until(() => summaries().length >= 2, 20_000, 'two chunks written');
    live.child.kill('SIGINT');
    const ended = await live.done;
    expect(ended.code).toBe(130);
    const jobId = /resume with: fanout resume (\S+)/.exec(ended.stderr)?.[1];
    expect(jobId).toBeDefined();
    const resumed = await run(['resume', jobId!, '--data-dir', data]);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`job ${jobId} completed`);
    const all = (await run(['results', jobId!, '--data-dir', data])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expectOnePerIndex(all, 40);
    expect(all.filter((r) => !r.ok)).toEqual([]);
  });

  it('shows the dashboard in a browser (Debian chromium), from the installed package', async () => {
    const server = await startServe(['--data-dir', join(dir, 'browsed')], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' }, { bin, cwd: home });
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    try {
      writeFileSync(join(home, 'two.txt'), `${origin.url}/ok\n${origin.url}/ok?x=1\n`);
      const submitted = await run(['submit', 'two.txt', '--api', server.url, '--wait']);
      const { jobId } = JSON.parse(submitted.stdout) as { jobId: string };
      const errors: string[] = [];
      const page = await browser.newPage();
      page.on('pageerror', (e) => errors.push(String(e)));
      const answer = await page.goto(`${server.url}/ui/jobs/${jobId}`);
      expect(answer?.status()).toBe(200);
      // The page's script read the job through the API: its state is on the page.
      await page.getByText('completed').first().waitFor({ timeout: 10_000 });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await server.stop();
    }
  }, 60_000);

  it('a running serve keeps decoding bodies when the package is reinstalled under it (its files replaced)', async () => {
    const server = await startServe(['--data-dir', join(dir, 'reinstalled')], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' }, { bin, cwd: home });
    // The bundle's file with the body decoders (its name changes with every build).
    const cli = join(installed, 'build', 'cli');
    const decoders = readdirSync(cli).find((f) => f.endsWith('.mjs') && readFileSync(join(cli, f), 'utf8').includes('transportLayerEncodingLabel'));
    expect(decoders).toBeDefined();
    try {
      writeFileSync(join(home, 'plain.txt'), `${origin.url}/ok?before=1\n`);
      const first = await run(['submit', 'plain.txt', '--api', server.url, '--wait', '--bodies', 'none']);
      expect(JSON.parse(first.stdout)).toMatchObject({ state: 'completed', succeeded: 1 });
      // What a reinstall does to the running process: the file it had not loaded yet is gone.
      renameSync(join(cli, decoders!), join(dir, decoders!));
      writeFileSync(join(home, 'bodies.txt'), `${origin.url}/ok?after=1\n`);
      const second = await run(['submit', 'bodies.txt', '--api', server.url, '--wait']);
      expect(JSON.parse(second.stdout)).toMatchObject({ state: 'completed', succeeded: 1, failed: 0 });
      const [record] = (await run(['results', JSON.parse(second.stdout).jobId], { FANOUT_API: server.url })).stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(record).toMatchObject({ ok: true, bodyEncoding: 'utf8' });
    } finally {
      if (existsSync(join(dir, decoders!))) renameSync(join(dir, decoders!), join(cli, decoders!));
      await server.stop();
    }
  });

  it('serves the API, the dashboard and the API docs with no network (assets served locally)', async () => {
    const server = await startServe(['--data-dir', join(dir, 'served')], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' }, { bin, cwd: home });
    try {
      for (const path of ['/', '/ui/app.js', '/ui/app.css', '/docs', '/docs/swagger-ui.css', '/docs/swagger-ui-bundle.js', '/openapi.json', '/health']) {
        const res = await request(`${server.url}${path}`);
        const body = await res.body.text();
        expect({ path, status: res.statusCode }).toEqual({ path, status: 200 });
        if (path === '/docs') expect(body).not.toMatch(/https?:\/\/(cdn|unpkg)/);
        if (path === '/') expect(body).toContain('<html');
      }
      writeFileSync(join(home, 'few.txt'), `${origin.url}/ok\n${origin.url}/status?code=404\n`);
      const submitted = await run(['submit', 'few.txt', '--api', server.url, '--wait']);
      expect(submitted.code).toBe(0);
      expect(JSON.parse(submitted.stdout)).toMatchObject({ state: 'completed', total: 2, succeeded: 1, failed: 1 });
      const page = await request(`${server.url}/ui/jobs/${JSON.parse(submitted.stdout).jobId}`);
      expect(page.statusCode).toBe(200);
      await page.body.dump();
      const results = await run(['results', JSON.parse(submitted.stdout).jobId], { FANOUT_API: server.url });
      expect(results.stdout.trim().split('\n')).toHaveLength(2);
    } finally {
      await server.stop();
    }
  });
});
