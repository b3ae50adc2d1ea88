/**
 * The summary `fanout fetch` prints when a job ends: totals, status classes, error codes,
 * latency percentiles and throughput.
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

const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);

/** Human-readable lines describing a finished job. */
export function formatSummary(status: JobStatus, elapsedMs: number, dataDir: string): string {
  const seconds = elapsedMs / 1000;
  const noResponse = status.done - Object.values(status.byStatus).reduce((a, b) => a + b, 0);
  const lines = [
    `fanout: job ${status.jobId} ${status.state} in ${seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)} s`,
    `  ${status.total} URLs: ${status.succeeded} ok, ${status.failed} failed (${Math.round(status.done / Math.max(seconds, 0.001))} URLs/s)`,
    `  status: ${byClass(status.byStatus) || '-'}${noResponse > 0 ? `, no response ${noResponse}` : ''}`,
  ];
  if (Object.keys(status.byError).length > 0) lines.push(`  errors: ${list(status.byError)}`);
  lines.push(`  latency: p50 ${ms(status.latencyMs.p50)}, p95 ${ms(status.latencyMs.p95)}, p99 ${ms(status.latencyMs.p99)}`);
  lines.push(`  results: ${dataDir}/jobs/${status.jobId}/ (${status.results.files.length} result files)`);
  return lines.join('\n') + '\n';
}
