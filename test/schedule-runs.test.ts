/**
 * Issue 13, done when: two runs of the same schedule against a loopback origin whose pages change
 * between runs. The second run's records say which changed, which are new, which newly fail and which
 * recovered; 304s are used where the origin sends ETags; GET /schedules/:name/runs lists both; the
 * callback carries the counts (and `alertOn` holds it back when nothing matches); on AWS the worker
 * puts a Job Finished event carrying them (EventBridge mocked).
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { APIGatewayProxyStructuredResultV2, SQSBatchResponse } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../functions/cli/main.ts';
import { formatSummary } from '../functions/cli/summary.ts';
import type { JobStatus } from '../functions/core/status.ts';
import { awsRuntime, resetAwsRuntime } from '../functions/aws/environment.ts';
import { handler as apiHandler } from '../functions/aws/handlers/api.ts';
import { handler as scheduleHandler } from '../functions/aws/handlers/schedule.ts';
import { handler as workerHandler } from '../functions/aws/handlers/worker.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { layout } from '../functions/core/layout.ts';
import type { FetchRecord } from '../functions/core/record.ts';
import { startServer, type RunningServer } from '../functions/local/serve.ts';
import type { LocalStore } from '../functions/local/local-store.ts';
import { startDynalite, type Dynalite } from './support/dynalite.ts';
import { startFakeSqs, type FakeSqs } from './support/fake-sqs.ts';
import { httpApiEvent, lambdaContext, sqsEvent } from './support/lambda-events.ts';
import { readRecords } from './support/jobs.ts';
import { awsTestEnv, startS3, type FakeS3 } from './support/s3.ts';
import { tempDir } from './support/tmp.ts';

interface Page {
  status: number;
  body: string;
  etag?: string;
}

/** An origin whose pages the test edits between runs; it answers If-None-Match with 304. */
async function startPages() {
  const pages = new Map<string, Page>();
  const seen: { path: string; ifNoneMatch?: string; status: number }[] = [];
  const server: Server = createServer((req, res) => {
    const page = pages.get(req.url ?? '') ?? { status: 404, body: 'gone' };
    const ifNoneMatch = req.headers['if-none-match'];
    if (page.etag && ifNoneMatch === page.etag && page.status === 200) {
      seen.push({ path: req.url!, ifNoneMatch, status: 304 });
      res.writeHead(304, { etag: page.etag }).end();
      return;
    }
    seen.push({ path: req.url!, ifNoneMatch, status: page.status });
    res.writeHead(page.status, { 'content-type': 'text/plain', ...(page.etag ? { etag: page.etag } : {}) }).end(page.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, pages, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A callback receiver. */
async function startHook() {
  const received: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push(JSON.parse(body) as Record<string, unknown>);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const byPath = (records: FetchRecord[]) => Object.fromEntries(records.map((r) => [new URL(r.url).pathname, r]));

/** The pages of the first run, and how they change for the second. */
function firstPages(pages: Map<string, Page>) {
  pages.set('/same-etag', { status: 200, body: 'steady', etag: '"s1"' }); // 304 in run 2
  pages.set('/same', { status: 200, body: 'plain' }); // no ETag: fetched again, same hash
  pages.set('/edited', { status: 200, body: 'price 10', etag: '"e1"' }); // new body and ETag
  pages.set('/breaks', { status: 200, body: 'fine' }); // 500 in run 2
  pages.set('/heals', { status: 503, body: 'down' }); // 200 in run 2
}
function secondPages(pages: Map<string, Page>) {
  pages.set('/edited', { status: 200, body: 'price 12', etag: '"e2"' });
  pages.set('/breaks', { status: 500, body: 'boom' });
  pages.set('/heals', { status: 200, body: 'up again' });
  pages.set('/added', { status: 200, body: 'fresh' }); // only in run 2's list
}
const PATHS_1 = ['/same-etag', '/same', '/edited', '/breaks', '/heals'];
// Run 2 puts the new URL first: no chunk lines up with run 1's, so the baseline's partitioned index is used.
const PATHS_2 = ['/added', ...PATHS_1];

function expectSecondRun(records: FetchRecord[]) {
  const r = byPath(records);
  expect(r['/added']).toMatchObject({ change: 'new', previous: null, ok: true });
  expect(r['/same-etag']).toMatchObject({
    change: 'unchanged',
    notModified: true,
    ok: true,
    status: 200,
    bytes: 0,
    sha256: sha('steady'),
    previous: { status: 200, sha256: sha('steady'), ok: true, bytes: 6 },
  });
  expect(r['/same-etag']!.headers.etag).toBe('"s1"');
  expect(r['/same']).toMatchObject({ change: 'unchanged', status: 200, sha256: sha('plain') });
  expect(r['/same']!.notModified).toBeUndefined();
  expect(r['/edited']).toMatchObject({ change: 'changed', status: 200, sha256: sha('price 12'), previous: { sha256: sha('price 10') } });
  expect(r['/breaks']).toMatchObject({ change: 'changed', ok: false, status: 500, previous: { ok: true, status: 200 } });
  expect(r['/heals']).toMatchObject({ change: 'changed', ok: true, status: 200, previous: { ok: false, status: 503 } });
}
const SECOND_COUNTS = { new: 1, unchanged: 2, changed: 3, newlyFailing: 1, recovered: 1 };

describe('two runs of a schedule under fanout serve', () => {
  let origin: Awaited<ReturnType<typeof startPages>>;
  let hook: Awaited<ReturnType<typeof startHook>>;
  let server: RunningServer;
  let schedulesFile: string;

  beforeAll(async () => {
    [origin, hook] = await Promise.all([startPages(), startHook()]);
    const dataDir = tempDir();
    const file = (schedulesFile = join(dataDir, 'schedules.json'));
    const options = { chunkSize: 1, retries: 0, timeoutMs: 3_000, callbackUrl: hook.url };
    writeFileSync(
      file,
      JSON.stringify({
        schedules: [
          { name: 'watch', expression: 'cron(0 3 * * ? *)', list: 'lists/watch.txt', options },
          { name: 'quiet', expression: 'rate(1 day)', list: 'lists/quiet.txt', options, alertOn: ['newlyFailing'] },
        ],
      }),
    );
    server = await startServer({ host: '127.0.0.1', port: 0, dataDir, workers: 0, guard: new AddressGuard({ blockPrivate: false }), schedulesFile: file });
  });
  afterAll(async () => {
    await server?.close();
    await Promise.all([origin?.close(), hook?.close()]);
  });

  const get = async (path: string) => {
    const res = await fetch(server.url + path);
    expect(res.status).toBe(200);
    return res.json() as Promise<Record<string, unknown>>;
  };

  it('says what changed, newly fails, recovered and is new; uses 304s; lists the runs; calls back with the counts', async () => {
    const store = server.runtime.store;
    firstPages(origin.pages);
    await store.put('lists/watch.txt', PATHS_1.map((p) => origin.url + p).join('\n'));
    const first = await server.schedules!.fire('watch');
    await server.runtime.waitForJob(first.jobId);
    const firstRecords = await readRecords(store, first.jobId);
    expect(firstRecords.every((r) => r.change === undefined)).toBe(true); // the first run has no baseline

    secondPages(origin.pages);
    await store.put('lists/watch.txt', PATHS_2.map((p) => origin.url + p).join('\n'));
    origin.seen.length = 0;
    const second = await server.schedules!.fire('watch');
    const manifest = await server.runtime.waitForJob(second.jobId);
    expect(manifest).toMatchObject({ schedule: 'watch', since: first.jobId, changes: SECOND_COUNTS, bytesSaved: 6 });
    expectSecondRun(await readRecords(store, second.jobId));
    // The baseline's partitioned index was written once (the lists did not line up).
    expect(await store.exists(layout.baselineIndex(first.jobId))).toBe(true);
    // Conditional requests only where the baseline had an ETag; the origin answered 304 where it still matched.
    expect(origin.seen.find((s) => s.path === '/same-etag')).toEqual({ path: '/same-etag', ifNoneMatch: '"s1"', status: 304 });
    expect(origin.seen.find((s) => s.path === '/edited')).toMatchObject({ ifNoneMatch: '"e1"', status: 200 });
    expect(origin.seen.find((s) => s.path === '/same')?.ifNoneMatch).toBeUndefined();

    const status = await get(`/jobs/${second.jobId}`);
    expect(status).toMatchObject({ schedule: 'watch', since: first.jobId, changes: SECOND_COUNTS, bytesSaved: 6 });
    // What `fanout fetch --since` and `status --watch` print.
    expect(formatSummary(status as unknown as JobStatus, { elapsedMs: 1_000 })).toContain(
      `  since ${first.jobId}: 1 new, 3 changed, 2 unchanged; 1 newly failing, 1 recovered; 304s saved 6 bytes\n`,
    );
    const filtered = async (change: string) => {
      const text = await (await fetch(`${server.url}/jobs/${second.jobId}/results?change=${change}`)).text();
      return text.trim().split('\n').filter(Boolean).map((l) => new URL((JSON.parse(l) as FetchRecord).url).pathname);
    };
    expect(await filtered('newlyFailing')).toEqual(['/breaks']);
    expect(await filtered('recovered')).toEqual(['/heals']);
    expect(await filtered('new')).toEqual(['/added']);
    expect(await filtered('changed')).toEqual(['/edited', '/breaks', '/heals']);
    expect((await fetch(`${server.url}/jobs/${second.jobId}/results?change=moved`)).status).toBe(400);

    const runs = (await get('/schedules/watch/runs')) as { runs: Record<string, unknown>[]; next: string | null };
    expect(runs.runs.map((r) => r.jobId)).toEqual([second.jobId, first.jobId]);
    expect(runs.runs[0]).toMatchObject({ state: 'completed', total: 6, succeeded: 5, failed: 1, since: first.jobId, changes: SECOND_COUNTS });
    expect(runs.runs[0]!.durationMs).toEqual(expect.any(Number));
    expect(runs.runs[1]).toMatchObject({ state: 'completed', total: 5 });
    const paged = (await get('/schedules/watch/runs?limit=1')) as { runs: { jobId: string }[]; next: string };
    expect(paged.runs.map((r) => r.jobId)).toEqual([second.jobId]);
    const older = (await get(`/schedules/watch/runs?limit=1&cursor=${paged.next}`)) as { runs: { jobId: string }[]; next: string | null };
    expect(older).toMatchObject({ runs: [{ jobId: first.jobId }], next: null });
    expect((await fetch(`${server.url}/schedules/nope/runs`)).status).toBe(404);
    expect((await fetch(`${server.url}/schedules/watch/runs?cursor=bogus`)).status).toBe(400);
    // Any job may name a baseline; one that does not exist is refused before anything is created.
    const missing = await fetch(`${server.url}/jobs?since=01900000-0000-7000-8000-000000000000`, { method: 'POST', body: `${origin.url}/same\n` });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { detail: string }).detail).toMatch(/option "since": no job/);
    const adHoc = await fetch(`${server.url}/jobs?since=${first.jobId}`, { method: 'POST', body: `${origin.url}/same\n${origin.url}/added\n` });
    const { jobId: adHocId } = (await adHoc.json()) as { jobId: string };
    expect(await server.runtime.waitForJob(adHocId)).toMatchObject({ since: first.jobId, changes: { unchanged: 1, new: 1 } });
    expect((await get(`/jobs/${adHocId}`)).schedule).toBeUndefined();

    const listed = (await get('/schedules')) as { schedules: { name: string; nextRun: string | null; lastRun: { jobId: string } | null }[] };
    const watch = listed.schedules.find((s) => s.name === 'watch')!;
    expect(watch.lastRun?.jobId).toBe(second.jobId);
    expect(new Date(watch.nextRun!).getUTCHours()).toBe(3);

    await until('both callbacks', () => hook.received.length >= 2);
    const calls = hook.received.filter((b) => b.schedule === 'watch');
    expect(calls.find((b) => b.jobId === second.jobId)).toMatchObject({ state: 'completed', changes: SECOND_COUNTS, bytesSaved: 6 });
    expect(calls.find((b) => b.jobId === first.jobId)?.changes).toBeUndefined();
  });

  it('a third run over the same list compares chunk by chunk (no index), and alertOn holds back a callback with nothing to report', async () => {
    const store = server.runtime.store;
    const third = await server.schedules!.fire('watch');
    const manifest = await server.runtime.waitForJob(third.jobId);
    const runs = (await get('/schedules/watch/runs?limit=2')) as { runs: { jobId: string }[] };
    const baseline = runs.runs[1]!.jobId;
    expect(manifest.since).toBe(baseline);
    // Same list, same chunks: each chunk read the baseline's file of the same number; no index was needed.
    expect(await store.exists(layout.baselineIndex(baseline))).toBe(false);
    expect(manifest.changes).toEqual({ new: 0, unchanged: 6, changed: 0, newlyFailing: 0, recovered: 0 });
    // 304s wherever the baseline kept an ETag, including the one the edited page now sends.
    const records = byPath(await readRecords(store, third.jobId));
    expect(records['/same-etag']!.notModified).toBe(true);
    expect(records['/edited']!.notModified).toBe(true);

    origin.pages.set('/q', { status: 200, body: 'q' });
    await store.put('lists/quiet.txt', `${origin.url}/q\n`);
    const before = hook.received.length;
    const q1 = await server.schedules!.fire('quiet');
    await server.runtime.waitForJob(q1.jobId);
    const q2 = await server.schedules!.fire('quiet');
    await server.runtime.waitForJob(q2.jobId);
    origin.pages.set('/q', { status: 500, body: 'q' });
    const q3 = await server.schedules!.fire('quiet');
    expect(await server.runtime.waitForJob(q3.jobId)).toMatchObject({ changes: { newlyFailing: 1 } });
    await until('the quiet schedule callback', () => hook.received.some((b) => b.jobId === q3.jobId));
    // Runs 1 and 2 had nothing newly failing: no callback; run 3 had one.
    expect(hook.received.slice(before).map((b) => b.jobId).filter((id) => id !== third.jobId)).toEqual([q3.jobId]);
    expect(await store.exists(layout.callback(q2.jobId))).toBe(false);
  });

  it('fanout runs and fanout schedules answer from the API and from the data folder alike', async () => {
    const cli = async (args: string[]) => {
      let out = '';
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true));
      const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        expect(await main(['node', 'fanout', ...args])).toBe(0);
      } finally {
        spy.mockRestore();
        err.mockRestore();
      }
      return out;
    };
    const viaApi = JSON.parse(await cli(['runs', 'watch', '--api', server.url, '--json'])) as { runs: { jobId: string; changes?: unknown }[] };
    const viaFolder = JSON.parse(await cli(['runs', 'watch', '--data-dir', (server.runtime.store as LocalStore).root, '--json'])) as typeof viaApi;
    expect(viaApi.runs).toHaveLength(3);
    expect(viaFolder.runs.map((r) => r.jobId)).toEqual(viaApi.runs.map((r) => r.jobId));
    expect(viaApi.runs[1]!.changes).toEqual(SECOND_COUNTS);
    const lines = (await cli(['runs', 'watch', '--api', server.url])).trim().split('\n');
    expect(lines[1]).toMatch(/completed +5\/6 ok .* 1 new, 3 changed, 1 newly failing, 1 recovered$/);
    const schedules = await cli(['schedules', '--data-dir', (server.runtime.store as LocalStore).root, '--schedules', schedulesFile]);
    expect(schedules).toMatch(/^watch +cron\(0 3 \* \* \? \*\) +next \S+T03:00:00.000Z +last completed/m);
    expect(JSON.parse(await cli(['schedules', '--api', server.url, '--json'])).schedules.map((x: { name: string }) => x.name)).toEqual(['watch', 'quiet']);
  });
});

describe('on AWS: the schedule target, the worker and a Job Finished event', () => {
  const events = mockClient(EventBridgeClient);
  const saved = { ...process.env };
  let s3: FakeS3;
  let sqs: FakeSqs;
  let dyn: Dynalite;
  let origin: Awaited<ReturnType<typeof startPages>>;
  const schedule = { name: 'watch', expression: 'rate(1 day)', list: 'lists/watch.txt', options: { chunkSize: 2, retries: 0, timeoutMs: 3_000 } };

  beforeAll(async () => {
    [s3, sqs, dyn, origin] = await Promise.all([startS3(), startFakeSqs(), startDynalite(), startPages()]);
    await dyn.createLedgerTable('fanout-ledger');
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
    Object.assign(
      process.env,
      awsTestEnv(s3, sqs.endpoint, sqs.queueUrl('chunks'), {
        AWS_ENDPOINT_URL_DYNAMODB: dyn.endpoint,
        FANOUT_TOKEN: 't',
        FANOUT_LEDGER_TABLE: 'fanout-ledger',
        FANOUT_ALLOW_CIDRS: '127.0.0.1/32',
        FANOUT_EVENT_BUS: 'default',
        FANOUT_SCHEDULES_JSON: JSON.stringify({ schedules: [schedule] }),
        POWERTOOLS_LOG_LEVEL: 'ERROR',
        POWERTOOLS_METRICS_DISABLED: 'true',
      }),
    );
    resetAwsRuntime();
  });
  afterAll(async () => {
    process.env = saved;
    resetAwsRuntime();
    events.restore();
    await Promise.all([s3?.close(), sqs?.close(), dyn?.close(), origin?.close()]);
  });

  async function drain() {
    const queue = sqs.queue('chunks');
    for (let round = 0; round < 50; round++) {
      const messages = await queue.receive({ max: 5 });
      if (messages.length === 0) return;
      const response = (await workerHandler(sqsEvent(messages, 'arn:aws:sqs:us-east-1:123456789012:fanout-chunks'), lambdaContext())) as SQSBatchResponse;
      const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
      for (const m of messages) if (!failed.has(m.id)) await queue.delete(m.receipt);
    }
    throw new Error('queue did not drain');
  }

  it('puts source fanout, detail-type Job Finished, with the change counts on the default bus', async () => {
    const store = awsRuntime().store;
    firstPages(origin.pages);
    await store.put('lists/watch.txt', PATHS_1.map((p) => origin.url + p).join('\n'));
    const first = await scheduleHandler({ schedule });
    await drain();
    secondPages(origin.pages);
    await store.put('lists/watch.txt', PATHS_2.map((p) => origin.url + p).join('\n'));
    const second = await scheduleHandler({ schedule });
    await drain();

    expectSecondRun(await readRecords(store, second.jobId));
    const puts = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]!);
    expect(puts).toHaveLength(2);
    for (const entry of puts) expect(entry).toMatchObject({ Source: 'fanout', DetailType: 'Job Finished', EventBusName: 'default' });
    const detail = JSON.parse(puts[1]!.Detail!) as Record<string, unknown>;
    expect(detail).toMatchObject({ jobId: second.jobId, schedule: 'watch', since: first.jobId, state: 'completed', changes: SECOND_COUNTS, bytesSaved: 6 });
    expect(detail.results).toEqual({ manifest: layout.manifest(second.jobId) });

    // The API function lists the schedules the stack passed it, and their runs from the bucket.
    const get = async (path: string) => {
      const res = (await apiHandler(httpApiEvent('GET', path, { headers: { authorization: 'Bearer t' } }) as never, lambdaContext())) as APIGatewayProxyStructuredResultV2;
      expect(res.statusCode).toBe(200);
      return JSON.parse(res.isBase64Encoded ? Buffer.from(res.body ?? '', 'base64').toString() : (res.body ?? '')) as Record<string, any>;
    };
    const runs = await get('/schedules/watch/runs');
    expect(runs.runs.map((r: { jobId: string }) => r.jobId)).toEqual([second.jobId, first.jobId]);
    expect(runs.runs[0]).toMatchObject({ state: 'completed', changes: SECOND_COUNTS });
    const listed = await get('/schedules');
    expect(listed.schedules).toMatchObject([{ name: 'watch', lastRun: { jobId: second.jobId } }]);
    // A rate's next run counts from the last run (EventBridge's own start time is not known to the API).
    expect(Date.parse(listed.schedules[0].nextRun)).toBeGreaterThan(Date.now());
  }, 30_000);
});
