// fanout's engine alone (no queue, no store): fetchItem over the list under one concurrency limit,
// records built and serialised, bodies none. argv: base url, count, concurrency.
import { Fetcher } from '../../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../../functions/core/engine/guard.ts';
import { parseJobOptions } from '../../functions/core/options.ts';
import { serializeRecord } from '../../functions/core/record.ts';

const [base, count, concurrency] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4])];
const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
const options = parseJobOptions({ concurrency, perHost: concurrency, bodies: 'none' });
let ok = 0;
let next = 0;
let bytes = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const i = next++;
      const { record } = await fetcher.fetch({ index: i, url: `${base}?i=${i}` }, options);
      bytes += serializeRecord(record).length;
      if (record.ok) ok++;
    }
  }),
);
console.log(JSON.stringify({ requests: count, ok, seconds: (performance.now() - t0) / 1000, recordBytes: bytes }));
await fetcher.close();
