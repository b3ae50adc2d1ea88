/**
 * The AWS path at scale, under Lambda's limits (issue 10, "Prove it at scale"): the BUILT bundles
 * driven with AWS-shaped events against fauxqs (SQS + S3) and dynalite (DynamoDB), each function
 * on Node 24 under `ulimit -n 1024`, every API payload held to 6 MB and every call to 29 s.
 * See test/support/aws-scale.ts for how the event source mapping and API Gateway are played.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAMBDA_LIMITS, openScaleHarness, type ScaleHarness } from './support/aws-scale.ts';

const URLS = 3_000;
// As many origins as URLs: every URL is a new origin to the worker's connection pools.
const ORIGINS = 3_000;
// The worker's timeout in these runs; the queue's visibility timeout sits just above it.
const DEADLINE_MS = 30_000;

let harness: ScaleHarness;

beforeAll(async () => {
  harness = await openScaleHarness({ origins: ORIGINS, visibilityTimeoutSeconds: DEADLINE_MS / 1000 + 1 });
}, 60_000);
afterAll(async () => {
  await harness?.close();
});

const inOrder = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('the AWS bundles at scale under Lambda limits', () => {
  it('fetch 3,000 URLs over 3,000 distinct origins with no EMFILE, every record read back in order through 6 MB responses', async () => {
    const report = await harness.run({
      urls: URLS,
      chunkSize: 500,
      // Bodies of 2 KiB, as web pages are after truncation: the results outgrow one Lambda response.
      bodyBytes: 2_048,
      // timeoutMs well under the worker's time, so no chunk has to hand on for lack of it.
      options: { timeoutMs: 5_000 },
      deadlineMs: DEADLINE_MS,
      // A message failed by EMFILE comes back only after the visibility timeout: stop rather than wait.
      giveUpAfterMs: 35_000,
    });
    const seen = {
      gaveUp: report.gaveUp,
      connectErrors: report.connectErrors,
      maxWorkerFds: report.maxWorkerFds,
      batchItemFailures: report.batchItemFailures,
      state: report.status.state,
      done: report.status.done,
    };
    // Asserted as one object so a failure shows everything that was seen.
    expect(seen).toEqual({ gaveUp: false, connectErrors: {}, maxWorkerFds: seen.maxWorkerFds, batchItemFailures: 0, state: 'completed', done: URLS });
    expect(report.maxWorkerFds).toBeLessThan(LAMBDA_LIMITS.fileDescriptors);
    expect(report.status).toMatchObject({ total: URLS, succeeded: URLS, failed: 0 });
    expect(report.results!.failures).toEqual({});
    expect(report.results!.indexes).toEqual(inOrder(URLS));
    expect(report.apiViolations).toEqual([]);
    for (const call of [report.submit, ...report.statusCalls, ...report.results!.calls]) {
      expect(call.responseBytes, `${call.method} ${call.path}`).toBeLessThanOrEqual(LAMBDA_LIMITS.payloadBytes);
      expect(call.ms).toBeLessThan(LAMBDA_LIMITS.apiMs);
    }
    for (const container of report.containers) expect(container.oversize).toEqual([]);
  }, 90_000);

  it('hands chunks on across invocations when the deadline is short, still one record per URL in order', async () => {
    // Deadline 12.5 s, margin 10 s, timeoutMs 1 s: each delivery starts fetches for ~1.5 s only.
    const report = await harness.run({
      urls: 120,
      chunkSize: 60,
      delayMs: 400,
      options: { concurrency: 4, timeoutMs: 1_000, retries: 0 },
      deadlineMs: 12_500,
      giveUpAfterMs: 40_000,
    });
    expect(report.gaveUp).toBe(false);
    expect(report.containers.every((c) => !c.timedOut)).toBe(true);
    // Continuations: more chunk deliveries than chunks.
    const deliveries = report.containers.reduce((a, c) => a + c.records, 0);
    expect(deliveries).toBeGreaterThan(report.chunks);
    expect(report.status).toMatchObject({ state: 'completed', total: 120, done: 120, succeeded: 120 });
    expect(report.results!.indexes).toEqual(inOrder(120));
    expect(report.apiViolations).toEqual([]);
  }, 60_000);
});
