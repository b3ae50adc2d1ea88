/**
 * What the CLI prints: progress (bar on a terminal, lines without one), the summary, and the API
 * docs page served from local files.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { OpenAPIHono } from '@hono/zod-openapi';
import { Command } from 'commander';
import { z } from 'zod';
import { addJobFlags, jobOptionsFromFlags, type OptionsSchema } from '../functions/cli/job-flags.ts';
import { docsRoutes, swaggerAssetsDir } from '../functions/api/routes/meta.ts';
import { barFormat, createProgress, etaText, failureSummary, progressMode } from '../functions/cli/progress.ts';
import { formatSummary } from '../functions/cli/summary.ts';
import type { JobStatus } from '../functions/core/status.ts';

/** A fake stderr: a terminal of `columns` (or not), keeping what is written. */
function fakeStream(columns?: number) {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += chunk;
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  Object.assign(stream, { isTTY: columns !== undefined, columns });
  return { stream, text: () => text };
}

// eslint-disable-next-line no-control-regex
/** Terminal output as lines: a return to column 1 starts a line over; other escapes go. */
const plain = (s: string) => s.replace(/\x1b\[1G/g, '\r').replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('progress', () => {
  it('is a bar on a terminal, lines without one, nothing with --quiet', () => {
    expect(progressMode({ tty: true })).toBe('bar');
    expect(progressMode({ tty: false })).toBe('lines');
    expect(progressMode({ tty: true, quiet: true })).toBe('off');
  });

  it('without a terminal: a line every interval with done/total, rate and failures by code', async () => {
    const { stream, text } = fakeStream();
    const progress = createProgress(200, 'lines', { stream, lineEveryMs: 10, failures: async () => 'timeout 2, http 503 1' });
    progress.update(50, 3);
    await until(() => text().includes('\n'));
    progress.stop();
    expect(text().split('\n')[0]).toMatch(/^fanout: 50\/200 done \(25%\), \d+ URLs\/s, failed 3 \(timeout 2, http 503 1\)$/);
  });

  it.each([24, 40, 60, 80, 200])('the bar fits a terminal %i columns wide, and messages are written whole, apart from it', async (columns) => {
    const { stream, text } = fakeStream(columns);
    const total = 10_000_000;
    const progress = createProgress(total, 'bar', { stream });
    progress.update(1_234_567, 89_012);
    await new Promise((r) => setTimeout(r, 150));
    progress.log('fanout: warning: a message of some length that must stay whole');
    progress.update(2_345_678, 90_000);
    await new Promise((r) => setTimeout(r, 150));
    progress.stop();
    const lines = plain(text()).split(/[\r\n]/).filter((l) => l.trim() !== '');
    expect(lines).toContain('fanout: warning: a message of some length that must stay whole');
    for (const line of lines.filter((l) => !l.startsWith('fanout:'))) expect(line.length).toBeLessThan(columns);
    expect(lines.some((l) => l.includes('2345678/10000000'))).toBe(true);
  });

  it('the ETA is -- until there is a rate (the bar library showed "ETA LLs" and "ETA NFs"), then fits 999h59m', () => {
    expect(etaText(900, 0)).toBe('--');
    expect(etaText(900, Number.NaN)).toBe('--');
    expect(etaText(0, 0)).toBe('0s');
    expect(etaText(90, 2)).toBe('45s');
    expect(etaText(725, 1)).toBe('12m05s');
    expect(etaText(3 * 3600 + 7 * 60, 1)).toBe('3h07m');
    expect(etaText(1e12, 1)).toBe('999h46m');
  });

  it('barFormat drops the bar before anything wraps', () => {
    expect(barFormat(100, 120).barsize).toBe(30);
    expect(barFormat(100, 60).barsize).toBeLessThan(30);
    expect(barFormat(10_000_000, 40)).toMatchObject({ barsize: 0 });
  });

  it('failures by code: error codes, then statuses that are not 2xx', () => {
    expect(failureSummary({ byError: { timeout: 2, dns: 5 }, byStatus: { 200: 9, 503: 1, 404: 4 } })).toBe('dns 5, timeout 2, http 404 4, http 503 1');
  });
});

function status(over: Partial<JobStatus>): JobStatus {
  return {
    jobId: 'J',
    state: 'completed',
    createdAt: '2026-11-26T00:00:00.000Z',
    updatedAt: '2026-11-26T00:00:01.000Z',
    finishedAt: '2026-11-26T00:00:01.000Z',
    total: 1,
    done: 1,
    succeeded: 1,
    failed: 0,
    chunks: { total: 1, done: 1 },
    byStatus: { 200: 1 },
    byError: {},
    latencyMs: { p50: 1, p95: 1, p99: 1 },
    queuedMs: { p50: null, p95: null, p99: null },
    queuedSeconds: 0,
    durationSeconds: 0,
    bytes: 2,
    cancelRequested: false,
    source: null,
    results: { manifest: null, files: ['jobs/J/results/000000.ndjson.gz'] },
    ...over,
  };
}

describe('summary', () => {
  it('speaks of one URL and one result file in the singular', () => {
    const text = formatSummary(status({}), { elapsedMs: 500, dataDir: 'd' });
    expect(text).toContain('  1 URL: 1 ok, 0 failed (2 URLs/s)');
    expect(text).toContain('(1 result file)');
  });

  it('has no "status: -" line when nothing responded', () => {
    const text = formatSummary(status({ succeeded: 0, failed: 1, byStatus: {}, byError: { dns: 1 }, latencyMs: { p50: null, p95: null, p99: null } }), {
      elapsedMs: 500,
      dataDir: 'd',
    });
    expect(text).not.toContain('status: -');
    expect(text).toContain('status: no response from any URL');
    expect(text).toContain('errors: dns 1');
  });

  it('a resumed run reports its own count and rate, not the whole job\'s', () => {
    const text = formatSummary(status({ total: 100, done: 100, succeeded: 100 }), { elapsedMs: 2000, dataDir: 'd', doneBefore: 60 });
    expect(text).toContain('100 URLs: 100 ok, 0 failed; this run did 40 (20 URLs/s)');
  });

  it('shows the wait for a connection slot apart from the latency, and names --per-host when waiting took more time than the requests', () => {
    const waited = status({ latencyMs: { p50: 1, p95: 2, p99: 3 }, queuedMs: { p50: 300, p95: 400, p99: 500 }, queuedSeconds: 30, durationSeconds: 1 });
    const text = formatSummary(waited, { elapsedMs: 500, dataDir: 'd', perHost: 8 });
    expect(text).toContain('latency: p50 1 ms, p95 2 ms, p99 3 ms (the requests, without the wait for a connection)');
    expect(text).toContain('waited for a connection: p50 300 ms, p95 400 ms, p99 500 ms; 30.0 s in all (requests: 1.00 s in all)');
    expect(text).toContain('most of the time was spent waiting for a connection to the same host: raise --per-host (now 8)');
    const little = formatSummary({ ...waited, queuedSeconds: 0.5 }, { elapsedMs: 500, dataDir: 'd', perHost: 8 });
    expect(little).toContain('waited for a connection: p50 300 ms');
    expect(little).not.toContain('--per-host');
    expect(formatSummary(status({}), { elapsedMs: 500, dataDir: 'd', perHost: 8 })).not.toContain('waited for a connection');
    // Nobody really waited (p99 under a millisecond, 0.03 s against 172 s of requests): no line.
    const none = status({ queuedMs: { p50: 0, p95: 0, p99: 0.4 }, queuedSeconds: 0.03, durationSeconds: 172 });
    expect(formatSummary(none, { elapsedMs: 500, dataDir: 'd', perHost: 8 })).not.toContain('waited for a connection');
  });
});

describe('/docs', () => {
  it('serves Swagger UI from local files: no CDN', async () => {
    const dir = swaggerAssetsDir();
    expect(dir).toBeDefined();
    const app = docsRoutes(new OpenAPIHono(), dir);
    const page = await (await app.request('/docs')).text();
    expect(page).toContain('/docs/swagger-ui-bundle.js');
    expect(page).not.toMatch(/https?:\/\//);
    const script = await app.request('/docs/swagger-ui-bundle.js');
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toContain('javascript');
    expect((await script.text()).length).toBeGreaterThan(100_000);
    expect((await app.request('/docs/../package.json')).status).toBe(404);
  });

  it('falls back to the CDN where no copy is at hand (a Lambda bundle)', async () => {
    const page = await (await docsRoutes(new OpenAPIHono(), undefined).request('/docs')).text();
    expect(page).toContain('SwaggerUIBundle');
  });
});

describe('flags from the options schema', () => {
  // Options as another branch may add them: each gets its flag with no change to the CLI.
  const schema = z
    .object({
      ratePerHost: z.number().positive().max(1000).nullable().default(null),
      insecure: z.boolean().default(false),
      http2: z.boolean().default(true).describe('offer HTTP/2 on TLS connections (the server chooses)'),
      headerEnv: z.record(z.string(), z.string()).default({}),
      proxy: z.string().nullable().default(null),
      mode: z.enum(['fast', 'careful']).default('fast').describe('how to go about it'),
      retries: z.number().int().min(0).max(10).default(2).describe('extra attempts on network errors, 429 and 5xx'),
    })
    .strict() as unknown as OptionsSchema;

  it('gives every option a flag of its type, named after it, and passes the values back by option name', () => {
    const command = addJobFlags(new Command('x').exitOverride(), schema);
    command.parse(
      ['--rate-per-host', '2.5', '--insecure', '--no-http2', '--header-env', 'authorization=API_TOKEN', '--header-env', 'x-key=KEY',
        '--proxy', 'http://proxy.test:3128', '--mode', 'careful', '--retries', '0'],
      { from: 'user' },
    );
    expect(jobOptionsFromFlags(command.opts(), schema)).toEqual({
      ratePerHost: 2.5,
      insecure: true,
      http2: false,
      headerEnv: { authorization: 'API_TOKEN', 'x-key': 'KEY' },
      proxy: 'http://proxy.test:3128',
      mode: 'careful',
      retries: 0,
    });
  });

  it('leaves out what was not given, and states ranges, choices, defaults and the schema\'s description in help', () => {
    const command = addJobFlags(new Command('x').exitOverride(), schema);
    command.parse([], { from: 'user' });
    const given = jobOptionsFromFlags(command.opts(), schema);
    expect(Object.keys(given).filter((k) => k !== 'http2')).toEqual([]);
    const help = command.helpInformation().replace(/\s+/g, ' ');
    expect(help).toContain('--retries <n> extra attempts on network errors, 429 and 5xx (whole number from 0 to 10; default 2)');
    expect(help).toContain('--mode <value> how to go about it (fast | careful; default fast)');
    expect(help).toContain('--no-http2 turn off: offer HTTP/2 on TLS connections (the server chooses)');
    expect(help).toContain('--rate-per-host <rate>');
    expect(() => command.parse(['--retries', '11'], { from: 'user' })).toThrow('--retries: expected a whole number from 0 to 10, got "11"');
  });
});
