/** Helpers to fetch single items in tests, with a fresh Fetcher per test file. */
import { Fetcher } from '../../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../../functions/core/engine/guard.ts';
import type { Lookup } from '../../functions/core/engine/agent.ts';
import { parseJobOptions, type JobOptionsInput } from '../../functions/core/options.ts';

/** Options tuned for tests: short waits, so retry and timeout cases stay fast. */
export function testOptions(overrides: JobOptionsInput = {}) {
  return parseJobOptions({ retryBaseMs: 10, retryMaxDelayMs: 2_000, timeoutMs: 2_000, ...overrides });
}

export function openFetcher(guard = new AddressGuard({ blockPrivate: false }), lookup?: Lookup) {
  const fetcher = new Fetcher(guard, lookup);
  let index = 0;
  return {
    fetcher,
    fetch: (url: string, overrides: JobOptionsInput = {}, extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
      fetcher.fetch({ index: index++, url, ...extra }, testOptions(overrides), signal),
    close: () => fetcher.close(),
  };
}
