/**
 * `npx cdk synth` as a user runs it on a fresh clone: no `npm run build` first, no dist/, no Docker,
 * no AWS credentials. The app bundles the three functions itself, exactly as `npm run build` does;
 * cdk-nag must pass; each staged bundle must load on the Lambda runtime's Node from a folder with no node_modules, which proves it
 * carries its own AWS SDK. One real synth (~20-40 s on a loaded 2-core machine): the template
 * itself is covered, fast, by infra.test.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureNode24 } from './support/node24.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const clone = mkdtempSync('/tmp/fanout-fresh-clone-');
const out = mkdtempSync('/tmp/cdk.out.fanout-synth-');
afterAll(() => {
  rmSync(clone, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
});

/** The project's files as a clone has them (tracked and new files, nothing ignored), sharing node_modules. */
function freshClone(): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\0');
  for (const file of files) {
    if (!file || !existsSync(join(root, file))) continue;
    mkdirSync(dirname(join(clone, file)), { recursive: true });
    cpSync(join(root, file), join(clone, file));
  }
  symlinkSync(join(root, 'node_modules'), join(clone, 'node_modules'));
}

describe('npx cdk synth on a fresh clone', () => {
  it('bundles the functions as npm run build does, passes cdk-nag, and stages self-contained bundles that load on Node 24', () => {
    freshClone();
    expect(existsSync(join(clone, 'dist'))).toBe(false);
    // No credentials and no instance metadata to wait for: the CLI synthesizes an environment-agnostic stack.
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, CDK_DISABLE_CLI_TELEMETRY: '1', AWS_EC2_METADATA_DISABLED: 'true' };
    const synth = spawnSync('npx', ['cdk', 'synth', '--quiet', '-o', out], { cwd: clone, env, encoding: 'utf8', timeout: 170_000 });
    expect(synth.stderr).not.toMatch(/AwsSolutions|ERROR/);
    expect(synth.status, synth.stderr).toBe(0);
    expect(synth.stderr).toMatch(/Bundling asset Fanout\/Worker/);
    expect(existsSync(join(clone, 'dist'))).toBe(false);

    // The template's three functions point at three staged bundles.
    const template = JSON.parse(readFileSync(join(out, 'Fanout.template.json'), 'utf8')) as { Resources: Record<string, { Type: string; Properties: { Code?: { S3Key: unknown } } }> };
    const keys = Object.values(template.Resources)
      .filter((r) => r.Type === 'AWS::Lambda::Function')
      .map((r) => JSON.stringify(r.Properties.Code!.S3Key));
    const assets = readdirSync(out).filter((name) => name.startsWith('asset.'));
    expect(keys).toHaveLength(3);
    expect(assets).toHaveLength(3);
    for (const asset of assets) {
      expect(keys.some((key) => key.includes(asset.slice('asset.'.length))), asset).toBe(true);
      expect(readdirSync(join(out, asset)).sort()).toEqual(['index.mjs', 'index.mjs.map']);
    }

    // What it deploys is byte for byte what `npm run build` writes (the bundles the other tests run).
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: clone, env, stdio: 'ignore' });
    for (const name of ['api', 'worker', 'schedule']) {
      const built = readFileSync(join(clone, 'dist', name, 'index.mjs'));
      expect(assets.filter((a) => readFileSync(join(out, a, 'index.mjs')).equals(built)), name).toHaveLength(1);
    }

    // Loaded on the Lambda runtime's Node from /tmp, where no node_modules can supply an SDK.
    const node24 = ensureNode24();
    const load = `for (const dir of ${JSON.stringify(assets.map((a) => join(out, a)))}) { const m = await import(dir + '/index.mjs'); if (typeof m.handler !== 'function') throw new Error(dir + ': no handler'); } console.log('loaded');`;
    const loaded = spawnSync(node24, ['--input-type=module', '-e', load], { cwd: out, env: { PATH: process.env.PATH, POWERTOOLS_LOG_LEVEL: 'SILENT' }, encoding: 'utf8' });
    expect(loaded.stderr).toBe('');
    expect(loaded.stdout.trim()).toBe('loaded');
  }, 180_000);
});
