import { describe, expect, it } from 'vitest';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { BODY_BUDGET_DEFAULTS } from '../functions/local/body-budget.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import type { WorkerLoop } from '../functions/local/worker-loop.ts';
import { planUrls } from './support/jobs.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

// Defect 5 of the tryout: a worker took chunks of many jobs at once, each bringing its own
// concurrency x maxBodyBytes; three jobs of 16 x 32 MiB took 3 GB.
const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] });
let origin: Origin;
useOrigin((started) => (origin = started));

async function runJobs(options: Record<string, unknown>): Promise<WorkerLoop['bodyBudget']> {
  const runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard });
  try {
    const jobs = [];
    for (let j = 0; j < 3; j++) {
      const urls = Array.from({ length: 32 }, (_, i) => `${origin.url}/delay?ms=40&j=${j}&i=${i}`);
      jobs.push(await planUrls(runtime.store, runtime.queue, urls, { chunkSize: 16, ...options }));
    }
    runtime.start();
    for (const job of jobs) expect(await runtime.waitForJob(job.jobId)).toMatchObject({ state: 'completed', done: 32 });
    return runtime['loop']!.bodyBudget;
  } finally {
    await runtime.stop();
  }
}

describe('a worker holds at most BODY_BUDGET_DEFAULTS.maxHeldBodyBytes of bodies over all its jobs', () => {
  it('three jobs of 16 x 32 MiB: never more than one job in hand at once', async () => {
    const budget = await runJobs({ concurrency: 16, maxBodyBytes: 32 * 1024 * 1024 });
    expect(budget.peakJobs).toBe(1);
    expect(budget.peakBytes).toBeLessThanOrEqual(BODY_BUDGET_DEFAULTS.maxHeldBodyBytes);
    expect(budget.used).toBe(0);
  });

  it('small jobs still run side by side', async () => {
    const budget = await runJobs({ concurrency: 16, maxBodyBytes: 1024 * 1024 });
    expect(budget.peakJobs).toBeGreaterThan(1);
    expect(budget.peakBytes).toBeLessThanOrEqual(BODY_BUDGET_DEFAULTS.maxHeldBodyBytes);
  });
});
