/**
 * An ObjectStore wrapper that fails on command: a test says which operation on which keys fails,
 * and how many times, to inject transient and persistent store faults through the port.
 */
import type { Body, ObjectStore } from '../../functions/core/ports.ts';

type Op = 'put' | 'get' | 'getStream' | 'exists' | 'size' | 'list' | 'delete' | 'copyIfAbsent';

interface Rule {
  op: Op;
  match: RegExp;
  times: number;
}

export class FaultyStore implements ObjectStore {
  private rules: Rule[] = [];
  readonly failures: string[] = [];

  /** Present when the wrapped store has it (the port's optional copy), so callers take the same path. */
  readonly copyIfAbsent?: (from: string, to: string) => Promise<boolean>;

  constructor(private readonly inner: ObjectStore) {
    const copy = inner.copyIfAbsent?.bind(inner);
    if (copy) {
      this.copyIfAbsent = async (from, to) => {
        this.check('copyIfAbsent', to);
        return copy(from, to);
      };
    }
  }

  /** Fails the next `times` calls of `op` on keys matching `match` (Infinity: for good). */
  fail(op: Op, match: RegExp, times = 1): this {
    this.rules.push({ op, match, times });
    return this;
  }

  heal(): void {
    this.rules = [];
  }

  private check(op: Op, key: string): void {
    const rule = this.rules.find((r) => r.op === op && r.times > 0 && r.match.test(key));
    if (!rule) return;
    rule.times--;
    this.failures.push(`${op} ${key}`);
    throw Object.assign(new Error(`injected ${op} failure on ${key}`), { code: 'EINJECTED' });
  }

  async put(key: string, body: Body, options?: { ifAbsent?: boolean; contentType?: string }) {
    this.check('put', key);
    return this.inner.put(key, body, options);
  }
  async get(key: string) {
    this.check('get', key);
    return this.inner.get(key);
  }
  async getStream(key: string, options?: { start?: number }) {
    this.check('getStream', key);
    return this.inner.getStream(key, options);
  }
  async size(key: string) {
    this.check('size', key);
    return this.inner.size(key);
  }
  async exists(key: string) {
    this.check('exists', key);
    return this.inner.exists(key);
  }
  list(prefix: string, options?: { startAfter?: string }) {
    this.check('list', prefix);
    return this.inner.list(prefix, options);
  }
  listPrefixes(prefix: string) {
    return this.inner.listPrefixes(prefix);
  }
  async delete(key: string) {
    this.check('delete', key);
    return this.inner.delete(key);
  }
  deletePrefix(prefix: string) {
    return this.inner.deletePrefix(prefix);
  }
}
