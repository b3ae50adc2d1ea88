/**
 * A worker fetching many distinct origins, run as a child process so it can live under Lambda's
 * descriptor limit (`bash -c 'ulimit -n 1024; exec node --import tsx many-origins.ts CONFIG'`).
 * Each URL has its own host name (o17.test, ...), answered by a resolver that points them all at one
 * loopback origin: thousands of origins to undici, one server to the test. The address guard is on
 * and opens only 127.0.0.1, so names resolving to 127.0.0.2 and the literal 127.0.0.2 must still be
 * blocked. Takes a JSON array of configurations; prints one JSON line for each: failures by code,
 * the peak of /proc/self/fd, the budget's counters.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Lookup } from '../../functions/core/engine/agent.ts';
import { Fetcher } from '../../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../../functions/core/engine/guard.ts';
import { parseJobOptions } from '../../functions/core/options.ts';
import { inOrder } from '../../functions/core/in-order.ts';
import type { FetchRecord } from '../../functions/core/record.ts';

export interface ManyOriginsConfig {
  port: number;
  origins: number;
  concurrency: number;
  /** Omit to use FANOUT_MAX_SOCKETS or the default. */
  maxSockets?: number;
  /** Extra URLs that the guard must block (names resolving to 127.0.0.2, and the literal). */
  blocked: number;
}

export interface ManyOriginsReport {
  total: number;
  ok: number;
  errors: Record<string, number>;
  /** First error message per code, to see what went wrong. */
  samples: Record<string, string>;
  /** Descriptors before the first fetch, and the most seen while fetching (sampled). */
  baseFds: number;
  peakFds: number;
  /** Times /proc/self/fd could not even be listed (EMFILE). */
  fdListingFailures: number;
  nofile: string;
  sockets: { max: number; inUse: number; peak: number; evicted: number; waited: number };
  ms: number;
}

/** Descriptors open now; listing them needs one more, so at the limit the listing fails (counted). */
let fdListingFailures = 0;
const fds = () => {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    fdListingFailures++;
    return 0;
  }
};

async function main(config: ManyOriginsConfig): Promise<ManyOriginsReport> {
  const lookup: Lookup = (host, _options, callback) => {
    const address = host.startsWith('b') ? '127.0.0.2' : '127.0.0.1';
    callback(null, [{ address, family: 4 }]);
  };
  const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] });
  const fetcher = new Fetcher(guard, lookup, config.maxSockets === undefined ? {} : { maxSockets: config.maxSockets });
  const options = parseJobOptions({ concurrency: config.concurrency, retries: 0, timeoutMs: 10_000, bodies: 'none' });
  const urls = Array.from({ length: config.origins }, (_, i) => `http://o${i}.test:${config.port}/ok`);
  for (let i = 0; i < config.blocked; i++) {
    urls.splice(Math.floor((i * urls.length) / config.blocked), 0, i % 2 ? `http://b${i}.test:${config.port}/ok` : `http://127.0.0.2:${config.port}/ok?${i}`);
  }
  fdListingFailures = 0;
  const baseFds = fds();
  let peakFds = baseFds;
  const sampler = setInterval(() => (peakFds = Math.max(peakFds, fds())), 5);
  const slot = fetcher.acquire('job', options);
  const started = Date.now();
  const records: FetchRecord[] = [];
  const items = urls.map((url, index) => ({ index, url }));
  for await (const batch of inOrder(items, async (item) => (await fetcher.fetch(item, options)).record, slot.slots, slot.budget)) records.push(...batch);
  const ms = Date.now() - started;
  clearInterval(sampler);
  const errors: Record<string, number> = {};
  const samples: Record<string, string> = {};
  for (const record of records) {
    if (!record.error) continue;
    errors[record.error.code] = (errors[record.error.code] ?? 0) + 1;
    samples[record.error.code] ??= record.error.message;
  }
  const sockets = fetcher.sockets;
  slot.release();
  await fetcher.close();
  return {
    total: records.length,
    ok: records.filter((r) => r.ok).length,
    errors,
    samples,
    baseFds,
    peakFds,
    fdListingFailures,
    nofile: /Max open files\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? '?',
    sockets,
    ms,
  };
}

// One report line per configuration, run one after another (one process start for several runs).
if (process.argv[2]) {
  for (const config of JSON.parse(process.argv[2]) as ManyOriginsConfig[]) {
    process.stdout.write(JSON.stringify(await main(config)) + '\n');
  }
}
