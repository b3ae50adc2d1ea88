// The chunk writer's bytes against JSON.stringify, and the list reader's edge cases fed one byte at a
// time. (From an attack on this round's writer and LineReader.)
import { gunzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { writeChunkFile } from '../functions/core/chunk-writer.ts';
import { openInput, boundedLines } from '../functions/core/input.ts';
import { failedRecord, makeRecord, type FetchRecord } from '../functions/core/record.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { tempDir } from './support/tmp.ts';

const rec = (index: number, body: string | undefined, enc: 'utf8' | 'base64' = 'utf8'): FetchRecord => {
  const base = failedRecord({ index, url: `http://a.test/${index}` }, 'internal', 'x');
  return body === undefined ? base : makeRecord(base, { body, bodyEncoding: enc });
};

describe('chunk writer', () => {
  it('byte-for-byte equal to JSON.stringify for tricky records', async () => {
    const store = new LocalStore(tempDir());
    const bodies: (string | undefined)[] = [
      undefined, '', 'é'.repeat(21_800), '😀'.repeat(10_900), '\ud800x\udc00', 'a'.repeat(21_840),
      '\u2028\u2029"\\\n\t\u0000', '€'.repeat(7000), 'x'.repeat(1024 * 1024 - 1) + '\ud83d\ude00' + 'y',
      '\ud83d'.repeat(1024 * 1024 + 3), 'é'.repeat(3 * 1024 * 1024 + 17), '☃'.repeat(21_845 - 300),
    ];
    const records: FetchRecord[] = [];
    for (let i = 0; i < 300; i++) records.push(rec(i, bodies[i % bodies.length] === undefined ? undefined : (bodies[i % bodies.length] as string).slice(0, i > 24 ? 200 : undefined)));
    for (let i = 300; i < 300 + bodies.length; i++) records.push(rec(i, bodies[i - 300]));
    async function* gen() {
      yield records.slice(0, 7);
      yield records.slice(7, 250);
      yield records.slice(250);
    }
    const out = await writeChunkFile(store, { resultsKey: 'jobs/x/results/000000.ndjson.gz' }, gen());
    expect(out.written).toBe(records.length);
    const data = gunzipSync((await store.get('jobs/x/results/000000.ndjson.gz'))!).toString('utf8');
    const expected = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
    expect(data.length).toBe(expected.length);
    expect(data === expected).toBe(true);
  }, 60_000);

  it('empty chunk: valid empty gzip', async () => {
    const store = new LocalStore(tempDir());
    async function* gen(): AsyncGenerator<FetchRecord[]> {}
    await writeChunkFile(store, { resultsKey: 'jobs/x/results/000001.ndjson.gz' }, gen());
    expect(gunzipSync((await store.get('jobs/x/results/000001.ndjson.gz'))!).length).toBe(0);
  });
});

function bytes1(text: string | Buffer): Readable {
  const buf = Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8');
  return Readable.from((function* () { for (let i = 0; i < buf.length; i++) yield buf.subarray(i, i + 1); })());
}

async function urls(source: Readable): Promise<string[]> {
  const input = await openInput(source);
  const out: string[] = [];
  for await (const item of input.items) out.push(`${item.index}:${item.url}`);
  return out;
}

describe('LineReader', () => {
  const text = '\uFEFF# comment é\r\n\r\nhttp://a.test/é?q=日本\r\n  \n#x\nhttp://b.test/😀\nhttp://c.test/last';
  it('1-byte chunks give the same items as one chunk', async () => {
    const a = await urls(bytes1(text));
    const b = await urls(Readable.from([Buffer.from(text)]));
    expect(a).toEqual(b);
    expect(a).toEqual(['0:http://a.test/é?q=日本', '1:http://b.test/😀', '2:http://c.test/last']);
  });
  it('ndjson 1-byte chunks', async () => {
    const nd = '{"url":"http://a.test/1","id":"é"}\r\n{"url":"http://a.test/2","id":"😀"}';
    const input = await openInput(bytes1(nd));
    expect(input.format).toBe('ndjson');
    const got = [];
    for await (const item of input.items) got.push(item);
    expect(got.map((i) => i.id)).toEqual(['é', '😀']);
  });
  it('json document 1-byte chunks', async () => {
    const doc = '{"urls": [\n"http://a.test/1",\n{"url":"http://a.test/2"}\n]}\n';
    const input = await openInput(bytes1(doc));
    expect(input.format).toBe('json');
    const got = [];
    for await (const item of input.items) got.push(item.url);
    expect(got).toEqual(['http://a.test/1', 'http://a.test/2']);
  });
  it('too long line names its line (second line, many chunks)', async () => {
    const long = 'http://a.test/' + 'a'.repeat(9 * 1024 * 1024);
    const src = Readable.from((function* () { yield Buffer.from('http://x.test/\n# c\n'); for (let i = 0; i < long.length; i += 65536) yield Buffer.from(long.slice(i, i + 65536)); yield Buffer.from('\nhttp://y.test/\n'); })());
    await expect(urls(src)).rejects.toThrow(/line 3/);
  });
  it('boundedLines offsets', async () => {
    const t = 'a\r\nbé\n\nc';
    const got = [];
    for await (const l of boundedLines(bytes1(t))) got.push([l.text, l.end, l.line]);
    expect(got).toEqual([['a', 3, 1], ['bé', 7, 2], ['', 8, 3], ['c', 9, 4]]);
  });
});
