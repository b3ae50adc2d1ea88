/**
 * The package as a user gets it: `npm pack`'s tarball installed into a temporary prefix (offline:
 * it has no dependencies), then run from an unrelated folder: no tsx, no esbuild, no node_modules
 * of the checkout. fetch (with worker threads), serve (dashboard and offline API docs) and the
 * client commands.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../functions/core/version.ts';
import { startServe, type Run } from './support/cli.ts';
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
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd: home, env: { ...process.env, FANOUT_DATA_DIR: '', FANOUT_API: '', FANOUT_TOKEN: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
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
