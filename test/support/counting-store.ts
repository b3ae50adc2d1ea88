/** An ObjectStore wrapper that counts requests by operation (each call is one S3 request on AWS). */
import type { Body, ObjectStore } from '../../functions/core/ports.ts';

export class CountingStore implements ObjectStore {
  readonly counts = new Map<string, number>();

  constructor(private readonly inner: ObjectStore) {}

  private count(op: string): void {
    this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
  }

  total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  reset(): void {
    this.counts.clear();
  }

  put(key: string, body: Body, options?: { ifAbsent?: boolean; contentType?: string }) {
    this.count('put');
    return this.inner.put(key, body, options);
  }
  get(key: string) {
    this.count('get');
    return this.inner.get(key);
  }
  getStream(key: string, options?: { start?: number }) {
    this.count('get');
    return this.inner.getStream(key, options);
  }
  exists(key: string) {
    this.count('head');
    return this.inner.exists(key);
  }
  size(key: string) {
    this.count('head');
    return this.inner.size(key);
  }
  // A listing costs one request per page of 1,000 keys, as S3's ListObjectsV2.
  async *list(prefix: string, options?: { startAfter?: string }) {
    this.count('list');
    let n = 0;
    for await (const key of this.inner.list(prefix, options)) {
      if (++n % 1000 === 0) this.count('list');
      yield key;
    }
  }
  listPrefixes(prefix: string) {
    this.count('list');
    return this.inner.listPrefixes(prefix);
  }
  delete(key: string) {
    this.count('delete');
    return this.inner.delete(key);
  }
  deletePrefix(prefix: string) {
    this.count('list');
    return this.inner.deletePrefix(prefix);
  }
}
