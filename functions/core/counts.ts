/**
 * Counts of records, as kept in each chunk's summary and summed into a job's status and manifest.
 * A chunk's counts are always computed from the records in its result file, so they agree with it.
 */
import { mergeHistograms, recordLatency, type Histogram } from './latency.ts';
import type { FetchRecord } from './record.ts';

export interface Counts {
  count: number;
  succeeded: number;
  failed: number;
  bytes: number;
  byStatus: Record<string, number>;
  byError: Record<string, number>;
  latency: Histogram;
  /** Time records waited for a connection slot (`queuedMs`), as a histogram like `latency`. */
  queued: Histogram;
  /** Sum of `queuedMs` of the records counted, ms. */
  queuedTotalMs: number;
  /** Sum of `durationMs` (the requests themselves), ms: with `queuedTotalMs`, says what share of the time was waiting. */
  durationTotalMs: number;
  /** Only for jobs with a baseline (option `since`): how the records compare with it. */
  changes?: ChangeCounts;
  /** Bytes not downloaded because the origin answered 304 (the baseline record's size). */
  bytesSaved?: number;
}

/** Contract names: `changes: {new, unchanged, changed, newlyFailing, recovered}`. */
export interface ChangeCounts {
  new: number;
  unchanged: number;
  changed: number;
  /** ok in the baseline, not ok now. */
  newlyFailing: number;
  /** Not ok in the baseline, ok now. */
  recovered: number;
}

export const CHANGE_COUNT_NAMES = ['new', 'unchanged', 'changed', 'newlyFailing', 'recovered'] as const satisfies readonly (keyof ChangeCounts)[];

export function emptyChanges(): ChangeCounts {
  return { new: 0, unchanged: 0, changed: 0, newlyFailing: 0, recovered: 0 };
}

/** Adds one record's comparison with its baseline. */
function countChange(counts: Counts, record: FetchRecord): void {
  if (record.change === undefined) return;
  const changes = (counts.changes ??= emptyChanges());
  changes[record.change]++;
  const previous = record.previous;
  if (previous && previous.ok && !record.ok) changes.newlyFailing++;
  if (previous && !previous.ok && record.ok) changes.recovered++;
  if (record.notModified && previous) counts.bytesSaved = (counts.bytesSaved ?? 0) + previous.bytes;
}

export function emptyCounts(): Counts {
  return { count: 0, succeeded: 0, failed: 0, bytes: 0, byStatus: {}, byError: {}, latency: {}, queued: {}, queuedTotalMs: 0, durationTotalMs: 0 };
}

/** Adds one record. Never-fetched records (no attempt) stay out of the latency and wait figures. */
export function countRecord(counts: Counts, record: FetchRecord): void {
  counts.count++;
  if (record.ok) counts.succeeded++;
  else counts.failed++;
  counts.bytes += record.bytes;
  if (record.status !== null) counts.byStatus[record.status] = (counts.byStatus[record.status] ?? 0) + 1;
  if (record.error) counts.byError[record.error.code] = (counts.byError[record.error.code] ?? 0) + 1;
  if (record.attempts > 0) {
    recordLatency(counts.latency, record.durationMs);
    const queued = record.queuedMs ?? 0;
    recordLatency(counts.queued, queued);
    counts.queuedTotalMs = round(counts.queuedTotalMs + queued);
    counts.durationTotalMs = round(counts.durationTotalMs + record.durationMs);
  }
  countChange(counts, record);
}

/** Sums kept to 0.1 ms, so repeated float additions do not grow digits. */
const round = (ms: number) => Math.round(ms * 10) / 10;

export function addCounts(into: Counts, from: Counts): Counts {
  into.count += from.count;
  into.succeeded += from.succeeded;
  into.failed += from.failed;
  into.bytes += from.bytes;
  for (const [k, v] of Object.entries(from.byStatus)) into.byStatus[k] = (into.byStatus[k] ?? 0) + v;
  for (const [k, v] of Object.entries(from.byError)) into.byError[k] = (into.byError[k] ?? 0) + v;
  mergeHistograms(into.latency, from.latency);
  // Summaries and ledgers written before the wait was counted have none of these.
  into.queued ??= {};
  mergeHistograms(into.queued, from.queued ?? {});
  into.queuedTotalMs = round((into.queuedTotalMs ?? 0) + (from.queuedTotalMs ?? 0));
  into.durationTotalMs = round((into.durationTotalMs ?? 0) + (from.durationTotalMs ?? 0));
  if (from.changes) {
    const changes = (into.changes ??= emptyChanges());
    for (const name of CHANGE_COUNT_NAMES) changes[name] += from.changes[name];
  }
  if (from.bytesSaved) into.bytesSaved = (into.bytesSaved ?? 0) + from.bytesSaved;
  return into;
}
