/**
 * The summary `fanout fetch`, `resume` and `status --watch` print when a job ends: totals, status
 * classes, error codes, latency percentiles and throughput.
 */
import type { LatencySummary } from '../core/latency.ts';
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
  /** The job's --per-host, to say when waiting for a connection slot held the run back. */
  perHost?: number;
}

/**
 * A status that may carry the time records waited for a connection slot (`queuedMs`, the engine's
 * figure beside `durationMs`); shown when present.
 */
type WithQueue = JobStatus & { queuedMs?: LatencySummary };

/**
 * Human-readable lines describing a finished (or stopped) job.
 *
 * @example
 * process.stdout.write(formatSummary(status, { elapsedMs: 2100, dataDir: './fanout-data' }));
 */
export function formatSummary(status: WithQueue, context: SummaryContext): string {
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
    lines.push(`  latency: p50 ${ms(status.latencyMs.p50)}, p95 ${ms(status.latencyMs.p95)}, p99 ${ms(status.latencyMs.p99)}`);
  }
  if (status.changes) {
    const c = status.changes;
    const saved = status.bytesSaved ? `; 304s saved ${status.bytesSaved} bytes` : '';
    lines.push(`  since ${status.since}: ${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged; ${c.newlyFailing} newly failing, ${c.recovered} recovered${saved}`);
  }
  const queued = status.queuedMs;
  if (queued && queued.p50 !== null) {
    const held = context.perHost !== undefined && queued.p50 > (status.latencyMs.p50 ?? 0);
    lines.push(
      `  waited for a connection: p50 ${ms(queued.p50)}, p95 ${ms(queued.p95)}` +
        (held ? ` (the per-host limit, --per-host ${context.perHost}, held this run back)` : ''),
    );
  }
  const files = status.results.files.length;
  const where = context.dataDir !== undefined ? `${context.dataDir}/jobs/${status.jobId}/` : (context.resultsAt ?? `fanout results ${status.jobId}`);
  lines.push(`  results: ${where} (${plural(files, 'result file')})`);
  return lines.join('\n') + '\n';
}
