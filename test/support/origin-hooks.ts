/** A test file's loopback origin (and a fetcher allowed to reach it), with vitest's hooks. */
import { afterAll, beforeAll } from 'vitest';
import { Fetcher } from '../../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../../functions/core/engine/guard.ts';
import { startOrigin, type Origin } from './origin.ts';

/**
 * Starts an origin before the tests of the file (or describe block) and closes it after them.
 *
 * @example
 * let origin: Origin;
 * useOrigin((started) => (origin = started));
 */
export function useOrigin(started: (origin: Origin) => void): void {
  let origin: Origin | undefined;
  beforeAll(async () => {
    origin = await startOrigin();
    started(origin);
  });
  afterAll(async () => {
    await origin?.close();
  });
}

/**
 * Starts an origin before the file's tests (handed to `started`) and closes it and the returned
 * fetcher (private addresses allowed) after them.
 *
 * @example
 * let origin: Origin;
 * const fetcher = originAndFetcher((o) => (origin = o));
 */
export function originAndFetcher(started: (origin: Origin) => void): Fetcher {
  const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
  useOrigin(started);
  afterAll(() => fetcher.close());
  return fetcher;
}
