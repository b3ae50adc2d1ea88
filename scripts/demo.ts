/**
 * `npm run demo`: the main job, offline. Starts a loopback origin with the web's mixed behaviours
 * (redirects, 404s, flaky 503s, 429 with Retry-After, gzip, slow and resetting servers), writes a
 * list of 10,000 URLs against it, and runs the real `fanout fetch` on it.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startOrigin } from '../test/support/origin.ts';

const TOTAL = Number(process.env.DEMO_URLS ?? 10_000);
const dir = join(process.cwd(), 'fanout-demo');
mkdirSync(dir, { recursive: true });

const origin = await startOrigin();
/** One URL per behaviour, weighted roughly as a crawl meets them. */
const mix: [number, (i: number) => string][] = [
  [160, (i) => `/ok?size=${(i * 131) % 4096}&i=${i}`],
  [10, (i) => `/redirect?n=${1 + (i % 3)}&i=${i}`],
  [6, (i) => `/status?code=404&i=${i}`],
  [6, (i) => `/gzip?size=${i % 10_000}&i=${i}`],
  [4, (i) => `/flaky?fails=1&i=${i}`],
  [4, (i) => `/delay?ms=${(i % 5) * 100}&i=${i}`],
  [2, (i) => `/retry-after?times=1&after=1&i=${i}`],
  [2, (i) => `/status?code=500&i=${i}`],
  [2, (i) => `/reset?i=${i}`],
  [2, (i) => `/loop?i=${i}`],
  [1, (i) => `/slow-headers?ms=20000&i=${i}`],
];
const weights = mix.reduce((sum, [w]) => sum + w, 0);
const urls: string[] = [];
for (let i = 0; i < TOTAL; i++) {
  let pick = (i * 7919) % weights;
  const entry = mix.find(([w]) => (pick -= w) < 0)!;
  urls.push(origin.url + entry[1](i));
}
const file = join(dir, 'urls.txt');
writeFileSync(file, urls.join('\n') + '\n');
console.log(`fanout demo: ${TOTAL} URLs against a loopback origin at ${origin.url} (list: ${file})\n`);

const bin = fileURLToPath(new URL('../bin/fanout.mjs', import.meta.url));
// One origin serves every URL here, so --per-host (8 by default, polite to real sites) would be the
// limit: the demo lets all 64 requests in flight reach it.
const args = [
  bin, 'fetch', file, '--out', join(dir, 'records.ndjson'), '--data-dir', join(dir, 'data'),
  '--timeout-ms', '2000', '--per-host', '64',
];
const code = await new Promise<number>((resolve) => {
  spawn(process.execPath, args, { stdio: 'inherit' }).on('exit', (c) => resolve(c ?? 1));
});
await origin.close();
console.log(`\nrecords: ${join(dir, 'records.ndjson')}; job folders: ${join(dir, 'data', 'jobs')}`);
process.exit(code);
