import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { parseExpression, parseSchedules } from '../functions/core/schedules.ts';
import { jobStatus } from '../functions/core/status.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { startSchedules } from '../functions/local/schedules.ts';
import { expectOnePerIndex, readRecords } from './support/jobs.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

describe('schedule expressions (EventBridge syntax)', () => {
  it.each([
    ['rate(5 minutes)', { kind: 'rate', ms: 300_000 }],
    ['rate(1 hour)', { kind: 'rate', ms: 3_600_000 }],
    ['rate(2 days)', { kind: 'rate', ms: 172_800_000 }],
    ['cron(0 3 * * ? *)', { kind: 'cron', pattern: '0 3 * * ?' }],
    ['cron(15 10 ? * 2-6 *)', { kind: 'cron', pattern: '15 10 ? * 1-5' }],
    ['cron(0 9 ? * 6#3 *)', { kind: 'cron', pattern: '0 9 ? * 5#3' }],
    ['cron(0 12 ? * MON,FRI *)', { kind: 'cron', pattern: '0 12 ? * MON,FRI' }],
  ])('%s', (expression, expected) => {
    expect(parseExpression(expression)).toEqual(expected);
  });

  it.each(['rate(0 minutes)', 'rate(5 weeks)', 'cron(0 3 * * *)', 'cron(0 3 1 * 2 *)', 'cron(0 3 * * ? 2027)', '0 3 * * *', 'every day'])(
    'refuses %s',
    (expression) => {
      expect(parseExpression(expression)).toBeUndefined();
    },
  );
});

describe('schedules file', () => {
  const valid = { name: 'nightly', expression: 'rate(1 day)', list: 'lists/urls.txt' };
  it('fills defaults', () => {
    expect(parseSchedules(JSON.stringify({ schedules: [valid] }))[0]).toEqual({
      ...valid,
      timezone: 'UTC',
      format: 'auto',
      options: {},
      enabled: true,
      alertOn: [],
    });
  });

  it.each([
    [{ schedules: [{ ...valid, name: 'has space' }] }, /name/],
    [{ schedules: [{ ...valid, expression: 'often' }] }, /expression/],
    [{ schedules: [{ ...valid, list: '../etc/passwd' }] }, /list/],
    [{ schedules: [{ ...valid, options: { concurrency: 0 } }] }, /schedule "nightly": option "concurrency"/],
    [{ schedules: [valid, valid] }, /defined twice/],
    [{ schedules: [{ ...valid, alertOn: ['sometimes'] }] }, /alertOn/],
    [{ schedules: [{ ...valid, colour: 'red' }] }, /unknown schedules field "schedules.0.colour"/],
  ])('refuses %j', (file, message) => {
    expect(() => parseSchedules(JSON.stringify(file))).toThrow(message);
  });
});

describe('running schedules locally', () => {
  let origin: Origin;
  useOrigin((started) => (origin = started));

  it('fires a rate schedule, submitting the list from the store as a job', async () => {
    const dataDir = tempDir();
    const runtime = new EmbeddedRuntime({ dataDir, guard: new AddressGuard({ blockPrivate: false }) });
    const urls = Array.from({ length: 7 }, (_, i) => `${origin.url}/ok?s=${i}`);
    await runtime.store.put('lists/urls.txt', urls.join('\n'));
    const file = join(dataDir, 'schedules.json');
    writeFileSync(
      file,
      JSON.stringify({
        schedules: [
          { name: 'every-minute', expression: 'rate(1 minute)', list: 'lists/urls.txt', options: { chunkSize: 3 } },
          { name: 'weekdays', expression: 'cron(0 3 ? * 2-6 *)', list: 'lists/urls.txt' },
          { name: 'off', expression: 'rate(1 day)', list: 'lists/urls.txt', enabled: false },
        ],
      }),
    );
    runtime.start();
    const runner = await startSchedules(file, runtime);
    try {
      const next = runner.nextRuns();
      expect(new Date(next['weekdays']!).getUTCHours()).toBe(3);
      expect(next['off']).toBeNull();
      const job = await runner.fire('every-minute');
      expect(job).toMatchObject({ total: 7, chunks: 3, state: 'queued' });
      await runtime.waitForJob(job.jobId);
      expect((await jobStatus(runtime.store, job.jobId)).source).toBe('schedule:every-minute');
      expectOnePerIndex(await readRecords(runtime.store, job.jobId), 7);
    } finally {
      runner.stop();
      await runtime.stop();
    }
  });
});
