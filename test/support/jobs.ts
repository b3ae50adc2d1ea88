/** Helpers to plan jobs and read their records back in tests. */
import { Readable } from 'node:stream';
import { openInput } from '../../functions/core/input.ts';
import { planJob } from '../../functions/core/plan.ts';
import type { ObjectStore, Queue } from '../../functions/core/ports.ts';
import type { FetchRecord } from '../../functions/core/record.ts';
import { readResultLines } from '../../functions/core/results.ts';

export async function planUrls(store: ObjectStore, queue: Queue, urls: string[], options: Record<string, unknown> = {}) {
  const input = await openInput(Readable.from([urls.join('\n') + '\n']));
  return planJob(store, queue, { input, options: { retryBaseMs: 10, timeoutMs: 3_000, ...options }, source: 'test' });
}

export async function readRecords(store: ObjectStore, jobId: string): Promise<FetchRecord[]> {
  const records: FetchRecord[] = [];
  for await (const line of readResultLines(store, jobId)) records.push(JSON.parse(line) as FetchRecord);
  return records;
}

/** Exactly one record per input index 0..total-1, in order. */
export function expectOnePerIndex(records: FetchRecord[], total: number): void {
  const indexes = records.map((r) => r.index);
  const expected = Array.from({ length: total }, (_, i) => i);
  if (JSON.stringify(indexes) !== JSON.stringify(expected)) {
    throw new Error(`records are not one per index in order: got ${records.length} records, first indexes ${indexes.slice(0, 20).join(',')}`);
  }
}
