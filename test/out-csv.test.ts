import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { CSV_OUT_COLUMNS, outFormatOf, recordsToCsv } from '../functions/cli/out-csv.ts';
import { failedRecord, makeRecord, type FetchRecord } from '../functions/core/record.ts';
import { fanout } from './support/cli.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

function record(index: number, extra: Partial<FetchRecord> = {}): FetchRecord {
  return makeRecord({
    index,
    url: `http://a.test/${index}`,
    id: null,
    ok: true,
    status: 200,
    finalUrl: `http://a.test/${index}`,
    redirects: 0,
    headers: {},
    bytes: 5,
    truncated: false,
    sha256: 'ab'.repeat(32),
    attempts: 1,
    startedAt: '2026-11-26T00:00:00.000Z',
    durationMs: 1.5,
    queuedMs: 0,
    error: null,
    ...extra,
  });
}

async function toCsv(pieces: (string | Buffer)[]): Promise<string> {
  return text(Readable.from(pieces).pipe(recordsToCsv()));
}

describe('records as CSV', () => {
  const records = [
    record(0, { id: 'a', fields: { note: 'hello, "world"', status: 'todo' } }),
    failedRecord({ index: 1, url: 'http://b.test/ü', id: 7, fields: { note: 'two\nlines', status: 'x' } }, 'timeout', 'no answer in 15000 ms'),
    record(2, { duplicateOf: 0, ok: false, status: null, finalUrl: null, bytes: 0, sha256: null, attempts: 0, fields: { note: '€', status: '' } }),
  ];
  const ndjson = records.map((r) => JSON.stringify(r) + '\n').join('');

  it('has the fixed columns, then the fields of the first record (a clashing name prefixed), quoted as RFC 4180 says', async () => {
    const csv = await toCsv([ndjson]);
    const rows = parse(csv) as string[][];
    expect(rows[0]).toEqual([...CSV_OUT_COLUMNS, 'note', 'fields.status']);
    expect(rows[1]).toEqual(['0', 'http://a.test/0', 'a', 'true', '200', 'http://a.test/0', '0', '5', 'ab'.repeat(32), '1.5', '', '', '', 'hello, "world"', 'todo']);
    expect(rows[2]).toEqual(['1', 'http://b.test/ü', '7', 'false', '', '', '0', '0', '', '0', 'timeout', 'no answer in 15000 ms', '', 'two\nlines', 'x']);
    expect(rows[3]!.slice(0, 4)).toEqual(['2', 'http://a.test/2', '', 'false']);
    expect(rows[3]![12]).toBe('0');
    expect(rows).toHaveLength(4);
  });

  it('gives the same CSV whatever the pieces the NDJSON comes in (UTF-8 characters cut included)', async () => {
    const whole = await toCsv([ndjson]);
    const bytes = Buffer.from(ndjson);
    for (const size of [1, 3, 17, 100]) {
      const pieces: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) pieces.push(bytes.subarray(i, i + size));
      expect(await toCsv(pieces)).toBe(whole);
    }
  });

  it('chooses CSV for a .csv file or --out-format csv, NDJSON otherwise (stdout included)', () => {
    expect(outFormatOf('out.CSV', undefined)).toBe('csv');
    expect(outFormatOf('out.ndjson', undefined)).toBe('ndjson');
    expect(outFormatOf('-', undefined)).toBe('ndjson');
    expect(outFormatOf('-', 'csv')).toBe('csv');
    expect(outFormatOf('out.csv', 'ndjson')).toBe('ndjson');
    expect(() => outFormatOf('-', 'xml')).toThrow(/--out-format: expected one of ndjson, csv/);
  });
});

describe('fanout fetch with CSV in and out', () => {
  let origin: Origin;
  useOrigin((started) => (origin = started));

  it('reads list.csv, dedupes, and writes --out FILE.csv in input order with the fields', async () => {
    const dir = tempDir();
    const list = join(dir, 'list.csv');
    writeFileSync(list, `link,id,team\n${origin.url}/ok?c=1,a,red\n${origin.url}/status?code=404,b,"blue, dark"\n${origin.url}/ok?c=1,c,green\n`);
    const out = join(dir, 'records.csv');
    const run = await fanout(['fetch', list, '--url-column', 'link', '--dedupe', '--bodies', 'none', '--out', out, '--data-dir', join(dir, 'data')]);
    expect(run.stderr).not.toMatch(/warning|error/i);
    expect(run.code).toBe(0);
    const rows = parse(readFileSync(out, 'utf8'), { columns: true }) as Record<string, string>[];
    expect(rows.map((r) => [r.index, r.id, r.ok, r.status, r.duplicateOf, r.team])).toEqual([
      ['0', 'a', 'true', '200', '', 'red'],
      ['1', 'b', 'false', '404', '', 'blue, dark'],
      ['2', 'c', 'false', '', '0', 'green'],
    ]);
    expect(origin.hits.get('/ok?c=1')).toBe(1);
    expect(rows[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes CSV to stdout with --out-format csv (--out - alone stays NDJSON: outFormatOf above)', async () => {
    const dir = tempDir();
    const list = join(dir, 'list.csv');
    writeFileSync(list, `url,note\n${origin.url}/ok?c=2,n\n`);
    const csv = await fanout(['fetch', list, '--bodies', 'none', '--out', '-', '--out-format', 'csv', '--data-dir', join(dir, 'data')]);
    expect(csv.code).toBe(0);
    const rows = parse(csv.stdout, { columns: true }) as Record<string, string>[];
    expect(Object.keys(rows[0]!)).toEqual([...CSV_OUT_COLUMNS, 'note']);
    expect(rows.map((r) => [r.index, r.status, r.note])).toEqual([['0', '200', 'n']]);
  });
});
