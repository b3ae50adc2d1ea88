import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundles, type BuiltBundle } from '../scripts/build.ts';
import { startFakeSqs, type FakeSqs } from './support/fake-sqs.ts';
import { ensureNode24 } from './support/node24.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { awsTestEnv, startS3, type FakeS3 } from './support/s3.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

let s3: FakeS3;
let sqs: FakeSqs;
let origin: Origin;
let bundles: BuiltBundle[];
// Two levels inside the project like dist/NAME/, so the bundles are byte for byte what `npm run build` writes.
const dist = mkdtempSync(join(root, '.tmp-dist-'));

beforeAll(async () => {
  [s3, sqs, origin, bundles] = await Promise.all([startS3(), startFakeSqs(), startOrigin(), buildBundles(dist)]);
});
afterAll(async () => {
  await Promise.all([s3.close(), sqs.close(), origin.close()]);
  rmSync(dist, { recursive: true, force: true });
});

function run(node: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(node, [`${root}test/support/bundle-driver.mjs`], { env: { PATH: process.env.PATH, ...env }, cwd: root });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the built Lambda bundles', () => {
  // The AWS SDK is bundled (~450 KiB of each): the ceiling keeps cold starts short (import times in
  // the infra note) and catches a dependency pulled in whole by mistake.
  it('are each under 1.5 MiB and carry their own AWS SDK', () => {
    expect(bundles.map((b) => b.name).sort()).toEqual(['api', 'schedule', 'worker']);
    for (const bundle of bundles) {
      expect(bundle.bytes, bundle.name).toBeLessThan(1.5 * 1024 * 1024);
      const code = readFileSync(bundle.file, 'utf8');
      expect(code, bundle.name).not.toMatch(/(from|import\()\s*["']@(aws-sdk|smithy)\//);
    }
    // lib-storage (multipart uploads) in every bundle, the presigner in the API's.
    for (const bundle of bundles) expect(readFileSync(`${bundle.file}.map`, 'utf8'), bundle.name).toContain('node_modules/@aws-sdk/lib-storage/');
    expect(readFileSync(`${bundles.find((b) => b.name === 'api')!.file}.map`, 'utf8')).toContain('node_modules/@aws-sdk/s3-request-presigner/');
  });

  it('run a job to completed under Node 24 against S3 and SQS endpoints set by AWS_ENDPOINT_URL_*', async () => {
    const node24 = ensureNode24();
    expect(existsSync(node24)).toBe(true);
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?size=${i}&b=${i}`);
    const env = awsTestEnv(s3, sqs.endpoint, sqs.queueUrl('bundle-chunks'), {
      FANOUT_TOKEN: 'bundle-token',
      FANOUT_ALLOW_CIDRS: '127.0.0.1/32',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      DRIVER_DIST: dist,
      DRIVER_URLS: JSON.stringify(urls),
    });
    const { code, stdout, stderr } = await run(node24, env);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    // The worker prints its metrics (EMF) on stdout too; the driver's summary is the last line.
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(out.node).toMatch(/^v24\./);
    expect(out.status).toMatchObject({ state: 'completed', total: 30, done: 30, succeeded: 30, chunks: { total: 5, done: 5 } });
    expect(out.indexes).toEqual(urls.map((_, i) => i));
  });
});
