import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';

const script = fileURLToPath(new URL('./fixtures/scripts/memory-job.ts', import.meta.url));
let origin: Origin;
useOrigin((started) => (origin = started));

/** Runs the memory script in its own process, so its peak RSS is its own. */
function measure(kind: string, count: number, ...extra: string[]): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, origin.url, kind, String(count), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(err))));
  });
}

describe('memory is bounded by concurrency x maxBodyBytes, not by response or input size (invariant 4)', () => {
  // Measured alone: 380-410 MiB, of which ~100 MiB is the brotli decoders' windows (4 MiB each, set by
  // the sender) and ~90 MiB the 80 kept bodies. The bound leaves room for a busy CI machine.
  it('40 concurrent 64 MiB bodies and 40 decompression bombs, cut at 1 MiB: peak RSS under 450 MiB', async () => {
    const result = await measure('bodies', 40);
    console.log(`80 hostile bodies at once: peak RSS ${result.peakMiB} MiB`);
    expect(result).toMatchObject({ done: 80, succeeded: 80 });
    expect(result.peakMiB).toBeLessThan(450);
  }, 120_000);

  // Issue 14 item 7. Kept bodies at the caps, 4 at once: 8 binary bodies of 32 MiB inline (base64, so a
  // record holds 4/3 of the bytes), and 8 bodies of 64 MiB with bodies=store. Measured alone on the shared
  // 2-core machine, before -> after: inline binary +865 -> +391..518 MiB (16 bodies: +481), inline text
  // +567 -> +357, store +490 -> +295..316. What changed: a body is gathered into one buffer (no join at
  // the end), let go once encoded, written to gzip a slice at a time (never as one line string), queued
  // items wait for the reorder budget when their turn comes, and part files carry their counts so the
  // result file is not parsed back. What remains above 2 x concurrency x maxBodyBytes is mostly dead
  // base64 strings (external memory) that V8 frees at its next collection.
  const c = 4;
  it('4 x 32 MiB inline bodies: peak RSS growth <= 3 x concurrency x maxBodyBytes x 4/3 (base64) + 64 MiB', async () => {
    const result = await measure('inline', 8, '32', 'application/octet-stream', 'inline');
    console.log(`8 inline 32 MiB bodies, 4 at once: RSS +${result.growthMiB} MiB`);
    expect(result).toMatchObject({ done: 8, succeeded: 8 });
    expect(result.growthMiB).toBeLessThanOrEqual(((3 * c * 32 * 4) / 3) + 64);
  }, 60_000);

  it('4 x 64 MiB bodies with bodies=store: peak RSS growth <= 1.5 x concurrency x maxBodyBytes + 64 MiB', async () => {
    const result = await measure('inline', 8, '64', 'application/octet-stream', 'store');
    console.log(`8 stored 64 MiB bodies, 4 at once: RSS +${result.growthMiB} MiB`);
    expect(result).toMatchObject({ done: 8, succeeded: 8 });
    expect(result.growthMiB).toBeLessThanOrEqual(1.5 * c * 64 + 64);
  }, 60_000);

  it('planning 1,000,000 lines takes no more memory than planning 100,000', async () => {
    const small = await measure('plan', 100_000);
    const large = await measure('plan', 1_000_000);
    console.log(`planning: 100k lines ${small.peakMiB} MiB, 1M lines ${large.peakMiB} MiB`);
    expect(large).toMatchObject({ total: 1_000_000, chunks: 2_000, messages: 2_000 });
    // Holding the items would cost well over 100 MiB more for ten times the lines (900,000 more items of
    // ~130 bytes each); what remains is the garbage collector's slack, 40-60 MiB on an idle machine and
    // more under load (measured: 149/191/212 MiB at 100k/1M/2M lines).
    expect(large.peakMiB! - small.peakMiB!).toBeLessThan(96);
  }, 120_000);
});
