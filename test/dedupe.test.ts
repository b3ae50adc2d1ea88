import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { optionsFromQuery } from '../functions/api/submit.ts';
import { DedupeSet, markDuplicates, requestKey } from '../functions/core/dedupe.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { openInput, type IndexedItem } from '../functions/core/input.ts';
import { parseJobOptions } from '../functions/core/options.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { expectOnePerIndex, readRecords } from './support/jobs.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

describe('requestKey', () => {
  it('normalizes as WHATWG URL does and drops the fragment', () => {
    expect(requestKey({ url: 'HTTP://Example.COM:80/a/../b?x=1#top' })).toBe('http://example.com/b?x=1');
    expect(requestKey({ url: 'https://a.test' })).toBe(requestKey({ url: 'https://a.test:443/' }));
    expect(requestKey({ url: 'http://a.test/?q=1' })).not.toBe(requestKey({ url: 'http://a.test/?q=2' }));
  });

  it('tells apart items of the same URL with another method, body or headers', () => {
    const url = 'http://a.test/';
    expect(requestKey({ url, method: 'POST', body: 'a' })).not.toBe(requestKey({ url, method: 'POST', body: 'b' }));
    expect(requestKey({ url, method: 'post', body: 'a' })).toBe(requestKey({ url, method: 'POST', body: 'a' }));
    expect(requestKey({ url, headers: { 'X-A': '1', b: '2' } })).toBe(requestKey({ url, headers: { b: '2', 'x-a': '1' } }));
    expect(requestKey({ url, method: 'GET' })).not.toBe(requestKey({ url }));
  });
});

describe('DedupeSet', () => {
  it('remembers the first index of each key through growth', () => {
    const set = new DedupeSet(16);
    const n = 50_000;
    let fresh = 0;
    for (let i = 0; i < n; i++) if (set.firstIndex(`http://h.test/${i}`, i) === undefined) fresh++;
    expect(fresh).toBe(n);
    expect(set.size).toBe(n);
    const wrong: number[] = [];
    for (let i = 0; i < n; i += 7) if (set.firstIndex(`http://h.test/${i}`, n + i) !== i) wrong.push(i);
    expect(wrong).toEqual([]);
    // and a set read back from its bytes (slices of a large upload) knows the same
    const copy = DedupeSet.fromBuffer(set.toBuffer());
    expect(copy.size).toBe(n);
    expect([copy.firstIndex('http://h.test/12345', 0), copy.firstIndex('http://h.test/new', n)]).toEqual([12345, undefined]);
    expect(set.size).toBe(n);
  });

  it('holds at most 24 bytes per distinct URL (12 a slot, at least 1/2 full after growing 1.5x)', () => {
    const set = new DedupeSet();
    for (let i = 0; i < 200_000; i++) set.firstIndex(`https://host${i % 50}.test/p/${i}`, i);
    expect(set.bytes / set.size).toBeLessThanOrEqual(24);
    expect(set.bytes / set.size).toBeGreaterThanOrEqual(16);
  });
});

describe('markDuplicates', () => {
  it('marks later items of a URL with the first index, leaving order and indexes alone', async () => {
    const input = await openInput(Readable.from(['http://a.test/\nhttp://b.test/x\n# c\nHTTP://A.test:80/#f\nhttp://b.test/x\nhttp://c.test/\n']));
    const items: IndexedItem[] = [];
    for await (const item of markDuplicates(input.items)) items.push(item);
    expect(items).toEqual([
      { index: 0, url: 'http://a.test/' },
      { index: 1, url: 'http://b.test/x' },
      { index: 2, url: 'HTTP://A.test:80/#f', duplicateOf: 0 },
      { index: 3, url: 'http://b.test/x', duplicateOf: 1 },
      { index: 4, url: 'http://c.test/' },
    ]);
  });

  it('is an option, off by default, also as ?dedupe=true', () => {
    expect(optionsFromQuery(new URLSearchParams('dedupe=true&insecure=false&concurrency=3'))).toEqual({ dedupe: true, insecure: false, concurrency: 3 });
    expect(parseJobOptions({}).dedupe).toBe(false);
    expect(parseJobOptions({ dedupe: true }).dedupe).toBe(true);
    expect(() => parseJobOptions({ dedupe: 'yes' })).toThrow(/dedupe/);
  });
});

describe('a job with dedupe', () => {
  let origin: Origin;
  let runtime: EmbeddedRuntime;
  beforeAll(async () => {
    origin = await startOrigin();
    runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: false }) });
    runtime.start();
  });
  afterAll(async () => {
    await runtime.stop();
    await origin.close();
  });

  async function run(lines: string[], options: Record<string, unknown>, format: 'text' | 'csv' = 'text') {
    const input = await openInput(Readable.from([lines.join('\n') + '\n']), format);
    const job = await runtime.submit(input, { bodies: 'none', retries: 0, ...options });
    await runtime.waitForJob(job.jobId);
    return readRecords(runtime.store, job.jobId);
  }

  it('fetches each URL once across chunks; every line still gets its record, duplicates pointing at the first', async () => {
    const urls = Array.from({ length: 30 }, (_, i) => `${origin.url}/ok?dd=${i % 7}`);
    const records = await run(urls, { dedupe: true, chunkSize: 4 });
    expectOnePerIndex(records, 30);
    for (let i = 0; i < 7; i++) expect(origin.hits.get(`/ok?dd=${i}`)).toBe(1);
    for (const record of records) {
      if (record.index < 7) {
        expect(record).toMatchObject({ ok: true, status: 200, attempts: 1 });
        expect(record.duplicateOf).toBeUndefined();
      } else {
        expect(record).toMatchObject({ duplicateOf: record.index % 7, ok: false, status: null, error: null, attempts: 0, bytes: 0, sha256: null });
        expect(records[record.duplicateOf!]!.url).toBe(record.url);
      }
    }
  });

  it('without the option, every line is fetched', async () => {
    const urls = Array.from({ length: 6 }, () => `${origin.url}/ok?nodd=1`);
    const records = await run(urls, {});
    expect(origin.hits.get('/ok?nodd=1')).toBe(6);
    expect(records.every((r) => r.duplicateOf === undefined && r.ok)).toBe(true);
  });

  it('keeps the fields of a duplicate CSV row in its record', async () => {
    const records = await run(['url,id,note', `${origin.url}/ok?csvdd=1,a,first`, `${origin.url}/ok?csvdd=1,b,second`], { dedupe: true }, 'csv');
    expect(records.map((r) => [r.id, r.fields, r.duplicateOf])).toEqual([
      ['a', { note: 'first' }, undefined],
      ['b', { note: 'second' }, 0],
    ]);
    expect(origin.hits.get('/ok?csvdd=1')).toBe(1);
  });
});

describe('dedupe in a list planned in slices (large uploads on AWS)', () => {
  it('hands the set from slice to slice, so duplicates across slices are marked; a redelivered slice gives the same marks', async () => {
    const { LocalStore } = await import('../functions/local/local-store.ts');
    const { submitStoredList, planSlice } = await import('../functions/core/plan-slices.ts');
    const { layout } = await import('../functions/core/layout.ts');
    const { readNdjsonGz } = await import('../functions/core/ndjson.ts');
    const store = new LocalStore(tempDir());
    const sent: string[] = [];
    const queue = { send: async (bodies: string[]) => void sent.push(...bodies) } as unknown as import('../functions/core/ports.ts').Queue;
    const lines = Array.from({ length: 40 }, (_, i) => `http://h.test/${i % 9}`);
    await store.put('lists/big.txt', lines.join('\n') + '\n');
    const submitted = await submitStoredList(store, queue, { list: 'lists/big.txt', format: 'text', options: { dedupe: true, chunkSize: 5 }, source: 'test', planInSlicesAboveBytes: 10 });
    expect(submitted.state).toBe('planning');
    // a deadline already passed: every slice hands on after one chunk
    let message = sent.shift()!;
    let slices = 0;
    for (;;) {
      const outcome = await planSlice(store, queue, message, { deadline: 0, marginMs: 0 });
      slices++;
      if (outcome.kind !== 'continued') {
        expect(outcome.kind).toBe('planned');
        break;
      }
      if (slices === 3) expect((await planSlice(store, queue, outcome.message, { deadline: 0, marginMs: 0 })).kind).toBe('continued'); // a redelivery
      message = outcome.message;
    }
    expect(slices).toBe(9); // 8 chunks, each slice handing on, and a last slice finding the end
    const items: IndexedItem[] = [];
    for (let chunk = 0; chunk < 8; chunk++) {
      for await (const item of readNdjsonGz<IndexedItem>((await store.getStream(layout.input(submitted.jobId, chunk)))!)) items.push(item);
    }
    expect(items.map((i) => i.duplicateOf ?? null)).toEqual(lines.map((_, i) => (i < 9 ? null : i % 9)));
    const left: string[] = [];
    for await (const key of store.list(`${layout.jobPrefix(submitted.jobId)}plan/`)) left.push(key);
    expect(left).toEqual([]);
  });
});
