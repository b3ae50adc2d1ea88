import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { InvalidKeyError } from '../functions/core/errors.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { tempDir } from './support/tmp.ts';

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of iterable) out.push(x);
  return out;
}

describe('LocalStore', () => {
  const root = tempDir();
  const store = new LocalStore(root);

  it('puts and gets strings, bytes and streams', async () => {
    await store.put('a/b/c.txt', 'hello');
    await store.put('a/bytes', new Uint8Array([1, 2, 3]));
    await store.put('a/stream', Readable.from([Buffer.from('st'), Buffer.from('ream')]));
    expect((await store.get('a/b/c.txt'))!.toString()).toBe('hello');
    expect([...(await store.get('a/bytes'))!]).toEqual([1, 2, 3]);
    const stream = await store.getStream('a/stream');
    const chunks: Buffer[] = [];
    for await (const c of stream!) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('stream');
    expect(await store.get('a/missing')).toBeNull();
    expect(await store.getStream('a/missing')).toBeNull();
    expect(await store.exists('a/b/c.txt')).toBe(true);
    expect(await store.exists('a/b')).toBe(false); // a folder is not an object
  });

  it('creates only if absent, atomically, and leaves no temporary files', async () => {
    expect(await store.put('once/key', 'first', { ifAbsent: true })).toBe(true);
    expect(await store.put('once/key', 'second', { ifAbsent: true })).toBe(false);
    expect((await store.get('once/key'))!.toString()).toBe('first');
    const racers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.put('once/race', `writer ${i}`, { ifAbsent: true })),
    );
    expect(racers.filter(Boolean)).toHaveLength(1);
    await store.put('plain/key', 'renamed into place');
    await store.put('plain/key', 'and again');
    await expect(store.put('plain/broken', Readable.from((async function* () { yield Buffer.from('x'); throw new Error('source failed'); })()))).rejects.toThrow('source failed');
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
  });

  it('copyIfAbsent makes a second key with the same bytes, only if absent; the copy outlives the source and a deleted prefix', async () => {
    await store.put('copy/parts/000001/000000.ndjson.gz', 'part bytes');
    expect(await store.copyIfAbsent('copy/parts/000001/000000.ndjson.gz', 'copy/results/000001.ndjson.gz')).toBe(true);
    expect(await store.copyIfAbsent('copy/parts/000001/000000.ndjson.gz', 'copy/results/000001.ndjson.gz')).toBe(false);
    await store.deletePrefix('copy/parts/');
    expect((await store.get('copy/results/000001.ndjson.gz'))?.toString()).toBe('part bytes');
    // The folders under the deleted prefix are made again on the next write there.
    await store.put('copy/parts/000002/000000.ndjson.gz', 'again');
    expect((await store.get('copy/parts/000002/000000.ndjson.gz'))?.toString()).toBe('again');
    await expect(store.copyIfAbsent('copy/missing', 'copy/other')).rejects.toThrow(/ENOENT/);
  });

  it('overwrites without ifAbsent', async () => {
    await store.put('over/key', 'one');
    await store.put('over/key', 'two');
    expect((await store.get('over/key'))!.toString()).toBe('two');
  });

  it('a failed streaming write leaves nothing behind', async () => {
    const failing = Readable.from(
      (async function* () {
        yield Buffer.from('partial');
        throw new Error('source broke');
      })(),
    );
    await expect(store.put('broken/key', failing)).rejects.toThrow('source broke');
    expect(await store.exists('broken/key')).toBe(false);
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
  });

  it('lists keys in S3 order, by prefix and after a key', async () => {
    for (const key of ['l/x/2', 'l/x/10', 'l/x-y', 'l/x/1', 'l/y', 'l/xa']) await store.put(key, key);
    expect(await collect(store.list('l/'))).toEqual(['l/x-y', 'l/x/1', 'l/x/10', 'l/x/2', 'l/xa', 'l/y']);
    expect(await collect(store.list('l/x/'))).toEqual(['l/x/1', 'l/x/10', 'l/x/2']);
    expect(await collect(store.list('l/x'))).toEqual(['l/x-y', 'l/x/1', 'l/x/10', 'l/x/2', 'l/xa']);
    expect(await collect(store.list('l/', { startAfter: 'l/x/10' }))).toEqual(['l/x/2', 'l/xa', 'l/y']);
    expect(await collect(store.list('nothing/'))).toEqual([]);
    expect(await store.listPrefixes('l/')).toEqual(['l/x/']);
  });

  it('deletes keys and prefixes', async () => {
    await store.put('d/1', '1');
    await store.put('d/sub/2', '2');
    await store.put('dz', 'z');
    await store.delete('d/1');
    await store.delete('d/1'); // deleting a missing key is fine, as on S3
    expect(await store.exists('d/1')).toBe(false);
    await store.deletePrefix('d/');
    expect(await collect(store.list('d/'))).toEqual([]);
    expect(await store.exists('dz')).toBe(true);
  });

  it.each(['../escape', 'a/../../etc/passwd', '/abs', 'a//b', 'a/./b', '.tmp/x', 'a\\b', 'a/b\0', '', 'x'.repeat(2000), 'a/.hidden'])(
    'refuses the key %j',
    async (key) => {
      await expect(store.put(key, 'x')).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
    },
  );

  it('never wrote outside its folder', () => {
    expect(existsSync(join(root, '..', 'escape'))).toBe(false);
  });
});
