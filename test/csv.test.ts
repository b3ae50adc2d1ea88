import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { UploadTarget } from '../functions/api/deps.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { EmptyInputError, InputError } from '../functions/core/errors.ts';
import { openInput, type IndexedItem, type InputReadOptions } from '../functions/core/input.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { readRecords } from './support/jobs.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

async function parse(source: string | string[], read: InputReadOptions = {}) {
  const input = await openInput(Readable.from(typeof source === 'string' ? [source] : source), 'csv', read);
  const items: IndexedItem[] = [];
  for await (const item of input.items) items.push(item);
  return { format: input.format, items };
}

async function error(text: string, read: InputReadOptions = {}): Promise<InputError> {
  try {
    await parse(text, read);
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error('expected an InputError');
}

describe('CSV input', () => {
  it('reads the url column, the id column and keeps the other columns as fields', async () => {
    const csv =
      '\uFEFFurl,id,note,team\r\n' +
      'http://a.test/1,a1,"hello, ""world""",red\r\n' +
      '\r\n' +
      '# a comment line\r\n' +
      ',,,\r\n' +
      'http://a.test/2#frag,,"two\nlines",blue\r\n' +
      'http://a.test/3,c3,,\r\n';
    const { format, items } = await parse(csv);
    expect(format).toBe('csv');
    expect(items).toEqual([
      { index: 0, url: 'http://a.test/1', id: 'a1', fields: { note: 'hello, "world"', team: 'red' } },
      { index: 1, url: 'http://a.test/2#frag', fields: { note: 'two\nlines', team: 'blue' } },
      { index: 2, url: 'http://a.test/3', id: 'c3', fields: { note: '', team: '' } },
    ]);
  });

  it('takes the URL from --url-column / urlColumn, and has no fields when there are no other columns', async () => {
    const { items } = await parse('name,link\nhome,http://a.test/\n', { urlColumn: 'link' });
    expect(items).toEqual([{ index: 0, url: 'http://a.test/', fields: { name: 'home' } }]);
    const only = await parse('url\nhttp://a.test/\n');
    expect(only.items).toEqual([{ index: 0, url: 'http://a.test/' }]);
  });

  it('names the header row when the URL column is missing', async () => {
    const e = await error('# exported\nlink,name\nhttp://a.test/,a\n');
    expect(e.line).toBe(2);
    expect(e.field).toBe('urlColumn');
    expect(e.message).toBe('line 2: no "url" column in the header row (line 2: "link", "name"): name the URL column with --url-column (API: urlColumn)');
    expect((await error('url,x\nhttp://a.test/,1\n', { urlColumn: 'link' })).message).toMatch(/^line 1: no "link" column/);
  });

  it('refuses duplicate and empty column names', async () => {
    expect((await error('url,note,note\nhttp://a.test/,1,2\n')).message).toMatch(/column "note" appears twice/);
    expect((await error('url,,x\nhttp://a.test/,1,2\n')).message).toMatch(/an empty column name/);
  });

  it('names the line of a row with another number of cells, a stray quote, a bad or empty URL', async () => {
    const cells = await error('url,id\nhttp://a.test/,1\nhttp://a.test/,2,extra\n');
    expect(cells.line).toBe(3);
    expect(cells.message).toBe('line 3: this row has 3 cells, the header row (line 1) has 2');
    expect((await error('url,id\nhttp://a.test/,1\nhttp://a"b.test/,2\n')).line).toBe(3);
    const scheme = await error('url,id\nhttp://a.test/,1\nftp://a.test/,2\n');
    expect(scheme.message).toMatch(/^line 3: unsupported scheme "ftp:"/);
    expect(scheme.field).toBe('url');
    expect((await error('url,id\n,1\n')).message).toBe('line 2: the "url" cell is empty');
    expect((await error('url,id\n"http://a.test/a b",1\n')).message).toMatch(/^line 2: whitespace inside the URL/);
    expect((await error('url,id\nhttp://a.test/,1\n"http://b.test/,2\n')).message).toMatch(/^line 3: a quoted cell is never closed/);
  });

  it('refuses a list with a header and no rows as empty', async () => {
    await expect(parse('url,id\n\n')).rejects.toBeInstanceOf(EmptyInputError);
    await expect(parse('')).rejects.toBeInstanceOf(EmptyInputError);
  });

  it('refuses a 20 MB row (no newline, or an unterminated quote) after reading little more than the limit', async () => {
    for (const opening of ['http://a.test/', '"http://a.test/']) {
      const state = { read: 0 };
      const source = (async function* () {
        yield Buffer.from('url,id\nhttp://ok.test/,1\n' + opening);
        while (state.read < 20 * 1024 * 1024) {
          state.read += 64 * 1024;
          yield Buffer.from('x'.repeat(64 * 1024));
        }
      })();
      const e = await openInput(source, 'csv').then(async (input) => {
        for await (const _ of input.items);
      }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).message).toMatch(/^line 3: line longer than 1048576 bytes/);
      expect(state.read).toBeLessThan(1.5 * 1024 * 1024);
    }
  });

  it('streams: rows come as they are read, split anywhere', async () => {
    const rows = Array.from({ length: 5_000 }, (_, i) => `http://h.test/${i},id${i},"note ${i}, ok"\n`).join('');
    const text = 'url,id,note\n' + rows;
    // pieces of 7 bytes cut rows, quotes and the CRLF-free lines anywhere
    const pieces = text.match(/[\s\S]{1,7}/g)!;
    const { items } = await parse(pieces);
    expect(items).toHaveLength(5_000);
    expect(items[4_999]).toEqual({ index: 4_999, url: 'http://h.test/4999', id: 'id4999', fields: { note: 'note 4999, ok' } });
  });

  it('is never guessed: a CSV text in auto format is read as text and fails on its header line', async () => {
    const input = await openInput(Readable.from(['url,id\nhttp://a.test/,1\n']));
    expect(input.format).toBe('text');
    await expect(
      (async () => {
        for await (const _ of input.items);
      })(),
    ).rejects.toThrow(/^line 1: not a valid URL: "url,id": if this is a CSV header row, read the list as CSV \(--format csv, or content-type text\/csv\)$/);
  });
});

describe('CSV through the API (text/csv)', () => {
  let origin: Origin;
  let runtime: EmbeddedRuntime;
  let app: ReturnType<typeof createApp>;
  beforeAll(async () => {
    origin = await startOrigin();
    runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }) });
    runtime.start();
    const uploads: UploadTarget = {
      receivesPut: true,
      async target(id, url) {
        return { url: `${url.origin}/uploads/${id}`, method: 'PUT', headers: { 'content-type': 'text/csv' }, expiresAt: null };
      },
    };
    app = createApp({ store: runtime.store, queue: runtime.queue, token: () => 'tok', uploads, cancel: (id) => runtime.cancel(id) });
  });
  afterAll(async () => {
    await runtime.stop();
    await origin.close();
  });
  const post = (path: string, body: string, type = 'text/csv') =>
    app.request(path, { method: 'POST', body, headers: { authorization: 'Bearer tok', 'content-type': type } });

  it('plans a text/csv body with ?urlColumn=, the fields reaching the records', async () => {
    const res = await post('/jobs?urlColumn=link&bodies=none', `link,id,note\n${origin.url}/ok?i=1,a,"first, row"\n${origin.url}/status?code=404,b,second\n`);
    expect(res.status).toBe(202);
    const { jobId, total } = (await res.json()) as { jobId: string; total: number };
    expect(total).toBe(2);
    await runtime.waitForJob(jobId);
    const records = await readRecords(runtime.store, jobId);
    expect(records.map((r) => [r.index, r.id, r.fields, r.status])).toEqual([
      [0, 'a', { note: 'first, row' }, 200],
      [1, 'b', { note: 'second' }, 404],
    ]);
    // the fields sit after id, in the contract's order
    expect(Object.keys(records[0]!).slice(0, 5)).toEqual(['index', 'url', 'id', 'fields', 'ok']);
  });

  it('answers 400 problem+json naming the header row when the column is missing; nothing is created', async () => {
    const res = await post('/jobs', `link,id\n${origin.url}/ok,a\n`);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/problem\+json/);
    const problem = (await res.json()) as { detail: string; line: number };
    expect(problem.line).toBe(1);
    expect(problem.detail).toMatch(/no "url" column in the header row/);
  });

  it('plans an uploaded CSV list with {"upload", "format": "csv", "urlColumn"}', async () => {
    const call = (method: string, path: string, body?: string, type = 'text/plain') =>
      app.request(`http://fanout.test${path}`, { method, body, headers: { authorization: 'Bearer tok', 'content-type': type } });
    const { uploadId } = (await (await call('POST', '/uploads')).json()) as { uploadId: string };
    const list = 'name,link\n' + Array.from({ length: 12 }, (_, i) => `n${i},${origin.url}/ok?u=${i}`).join('\n');
    expect((await call('PUT', `/uploads/${uploadId}`, list)).status).toBe(204);
    const res = await call('POST', '/jobs', JSON.stringify({ upload: uploadId, format: 'csv', urlColumn: 'link', options: { chunkSize: 5 } }), 'application/json');
    expect(res.status).toBe(202);
    const { jobId, total, chunks } = (await res.json()) as { jobId: string; total: number; chunks: number };
    expect([total, chunks]).toEqual([12, 3]);
    await runtime.waitForJob(jobId);
    const records = await readRecords(runtime.store, jobId);
    expect(records.map((r) => r.fields?.name)).toEqual(Array.from({ length: 12 }, (_, i) => `n${i}`));
  });

  it('answers 400 naming the line of a text/plain URL with a note after it', async () => {
    const res = await post('/jobs', `${origin.url}/ok\n${origin.url}/a some note\n`, 'text/plain');
    expect(res.status).toBe(400);
    const problem = (await res.json()) as { detail: string; line: number };
    expect(problem.line).toBe(2);
    expect(problem.detail).toMatch(/^line 2: whitespace inside the URL .*; put notes on their own line starting with #$/);
  });

  it('fanout submit sends a .csv file as text/csv with --url-column, directly and through an upload', async () => {
    const { serve } = await import('@hono/node-server');
    const { fanout } = await import('./support/cli.ts');
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    try {
      const api = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const list = join(tempDir(), 'list.csv');
      writeFileSync(list, `name,link\nx,${origin.url}/ok?sub=1\ny,${origin.url}/ok?sub=2\n`);
      for (const extra of [[], ['--upload']]) {
        const run = await fanout(['submit', list, '--url-column', 'link', '--api', api, '--token', 'tok', ...extra]);
        expect(run.stderr).toMatch(/2 URLs in 1 chunks/);
        expect(run.code).toBe(0);
        const jobId = run.stdout.trim();
        await runtime.waitForJob(jobId);
        expect((await readRecords(runtime.store, jobId)).map((r) => r.fields)).toEqual([{ name: 'x' }, { name: 'y' }]);
      }
    } finally {
      server.close();
    }
  });

  it('a schedule runs a CSV list with its urlColumn', async () => {
    const { scheduleSchema, submitScheduledJob } = await import('../functions/core/schedules.ts');
    await runtime.store.put('lists/sched.csv', `team,link\nred,${origin.url}/ok?sched=1\n`);
    const schedule = scheduleSchema.parse({ name: 'csv-list', expression: 'rate(1 hour)', list: 'lists/sched.csv', format: 'csv', urlColumn: 'link' });
    const submitted = await submitScheduledJob(runtime.store, runtime.queue, schedule);
    await runtime.waitForJob(submitted.jobId);
    expect((await readRecords(runtime.store, submitted.jobId)).map((r) => [r.url, r.fields])).toEqual([[`${origin.url}/ok?sched=1`, { team: 'red' }]]);
  });
});
