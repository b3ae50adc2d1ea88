/**
 * The summary `fanout fetch`, `resume` and `status --watch` print when a job ends: totals, status
 * classes, error codes, latency percentiles, the wait for connections (and whether --per-host held
 * the run back) and throughput.
 */
import type { JobStatus } from '../core/status.ts';

function byClass(byStatus: Record<string, number>): string {
  const classes: Record<string, number> = {};
  for (const [status, count] of Object.entries(byStatus)) {
    const cls = `${status[0]}xx`;
    classes[cls] = (classes[cls] ?? 0) + count;
  }
  return Object.entries(classes)
    .sort()
    .map(([cls, n]) => `${cls} ${n}`)
    .join(', ');
}

function list(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

const ms = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${v} ms`);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const secondsText = (seconds: number) => (seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1));

export interface SummaryContext {
  /** Wall time of this run. */
  elapsedMs: number;
  /** The local data folder, when the job's files are on this machine. */
  dataDir?: string;
  /** Where the records are otherwise, e.g. `fanout results JOB --api URL`. */
  resultsAt?: string;
  /** Records the job had before this run (a resumed job): the rate is this run's own. */
  doneBefore?: number;
  /** The job's --per-host, to say when waiting for a connection slot held the run back (default: the status's options). */
  perHost?: number;
}

/** Summary defaults, stated once. */
export const SUMMARY_DEFAULTS = {
  /**
   * The per-host limit is named as what held the run back when the records waited for a connection
   * at least this many times as long as their requests took, summed (1: more waiting than fetching).
   */
  heldBackShare: 1,
  /** A wait below this many seconds in all is not worth a line. */
  minWaitSeconds: 0.01,
  /** Nor one under this share of the requests' own time whose p99 is under a millisecond (nobody waited). */
  minWaitShare: 0.01,
} as const;

/**
 * The wait for a connection slot, apart from the request latency, and whether the per-host limit
 * held the run back (the summed wait at least {@link SUMMARY_DEFAULTS.heldBackShare} times the
 * summed request time), with the flag to raise.
 *
 * @example
 * waitLines(status, 8) // ['  waited for a connection: p50 14 ms, ...', '  most of the time was spent waiting ...']
 */
export function waitLines(status: Partial<Pick<JobStatus, 'queuedMs' | 'queuedSeconds' | 'durationSeconds'>>, perHost: number | undefined): string[] {
  const queued = status.queuedMs;
  const waited = status.queuedSeconds ?? 0;
  if (!queued || queued.p50 === null || waited < SUMMARY_DEFAULTS.minWaitSeconds) return [];
  const took = status.durationSeconds ?? 0;
  if ((queued.p99 ?? 0) < 1 && waited < took * SUMMARY_DEFAULTS.minWaitShare) return [];
  const lines = [
    `  waited for a connection: p50 ${ms(queued.p50)}, p95 ${ms(queued.p95)}, p99 ${ms(queued.p99)}; ` +
      `${secondsText(waited)} s in all (requests: ${secondsText(took)} s in all)`,
  ];
  if (waited >= took * SUMMARY_DEFAULTS.heldBackShare) {
    const now = perHost !== undefined ? ` (now ${perHost})` : '';
    lines.push(`  most of the time was spent waiting for a connection to the same host: raise --per-host${now}`);
  }
  return lines;
}

/**
 * Human-readable lines describing a finished (or stopped) job.
 *
 * @example
 * process.stdout.write(formatSummary(status, { elapsedMs: 2100, dataDir: './fanout-data' }));
 */
export function formatSummary(status: JobStatus, context: SummaryContext): string {
  const seconds = context.elapsedMs / 1000;
  const before = context.doneBefore ?? 0;
  const thisRun = status.done - before;
  const perSecond = Math.round(thisRun / Math.max(seconds, 0.001));
  const responded = Object.values(status.byStatus).reduce((a, b) => a + b, 0);
  const noResponse = status.done - responded;
  const lines = [`fanout: job ${status.jobId} ${status.state} in ${secondsText(seconds)} s`];
  const totals = `  ${plural(status.total, 'URL')}: ${status.succeeded} ok, ${status.failed} failed`;
  lines.push(before > 0 ? `${totals}; this run did ${thisRun} (${perSecond} URLs/s)` : `${totals} (${perSecond} URLs/s)`);
  if (responded > 0) lines.push(`  status: ${byClass(status.byStatus)}${noResponse > 0 ? `, no response ${noResponse}` : ''}`);
  else if (status.done > 0) lines.push(`  status: no response from any URL`);
  if (Object.keys(status.byError).length > 0) lines.push(`  errors: ${list(status.byError)}`);
  if (status.latencyMs.p50 !== null) {
    lines.push(`  latency: p50 ${ms(status.latencyMs.p50)}, p95 ${ms(status.latencyMs.p95)}, p99 ${ms(status.latencyMs.p99)} (the requests, without the wait for a connection)`);
  }
  if (status.changes) {
    const c = status.changes;
    const saved = status.bytesSaved ? `; 304s saved ${status.bytesSaved} bytes` : '';
    lines.push(`  since ${status.since}: ${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged; ${c.newlyFailing} newly failing, ${c.recovered} recovered${saved}`);
  }
  lines.push(...waitLines(status, context.perHost ?? status.options?.perHost));
  const files = status.results.files.length;
  const where = context.dataDir !== undefined ? `${context.dataDir}/jobs/${status.jobId}/` : (context.resultsAt ?? `fanout results ${status.jobId}`);
  lines.push(`  results: ${where} (${plural(files, 'result file')})`);
  return lines.join('\n') + '\n';
}
