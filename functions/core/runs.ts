/**
 * A schedule's runs: an index in the store written when a run is submitted and rewritten when it
 * finishes, so listing a schedule's runs costs one LIST page plus one GET per run shown, whatever
 * the number of jobs in the store (never a scan of jobs/).
 *
 * - `schedules/NAME/runs/INV-JOB.json`: the run (INV = 9999999999999 - createdAt ms: LIST returns
 *   the newest first);
 * - `schedules/NAME/last.json`: the last completed run, which the next run compares with.
 */
import type { ChangeCounts } from './counts.ts';
import { QueryError } from './errors.ts';
import type { JobMeta } from './job.ts';
import { checkScheduleName, layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';
import { jobStatus, type JobState, type JobStatus, type Manifest } from './status.ts';

/** Run listing, stated once. */
export const RUNS_DEFAULTS = {
  /** Runs per page unless `limit` says otherwise. */
  pageSize: 20,
  /** Largest `limit`. */
  maxPageSize: 100,
} as const;

/** One run of a schedule, as GET /schedules/:name/runs lists it. */
export interface RunEntry {
  jobId: string;
  schedule: string;
  state: JobState;
  createdAt: string;
  finishedAt: string | null;
  /** finishedAt - createdAt, null while running. */
  durationMs: number | null;
  total: number | null;
  done: number;
  succeeded: number;
  failed: number;
  /** The run it was compared with (option `since`), and the change counts. */
  since?: string;
  changes?: ChangeCounts;
  bytesSaved?: number;
}

export interface RunsPage {
  schedule: string;
  runs: RunEntry[];
  /** Cursor of the next (older) page, null on the last. */
  next: string | null;
}

const RUN_FILE = /^\d{13}-[0-9a-f-]{36}\.json$/;

function entryFromStatus(schedule: string, status: JobStatus): RunEntry {
  const finishedAt = status.finishedAt;
  return {
    jobId: status.jobId,
    schedule,
    state: status.state,
    createdAt: status.createdAt,
    finishedAt,
    durationMs: finishedAt ? Date.parse(finishedAt) - Date.parse(status.createdAt) : null,
    total: status.state === 'planning' ? null : status.total,
    done: status.done,
    succeeded: status.succeeded,
    failed: status.failed,
    ...(status.since ? { since: status.since, changes: status.changes, bytesSaved: status.bytesSaved } : {}),
  };
}

/**
 * Adds a submitted run to its schedule's index.
 *
 * @example
 * await recordRunStarted(store, 'nightly', { jobId, createdAt, total: 1000, state: 'queued' });
 */
export async function recordRunStarted(
  store: ObjectStore,
  schedule: string,
  run: { jobId: string; createdAt: string; total: number | null; state: 'queued' | 'planning'; since?: string | null },
): Promise<void> {
  const entry: RunEntry = {
    jobId: run.jobId,
    schedule,
    state: run.state,
    createdAt: run.createdAt,
    finishedAt: null,
    durationMs: null,
    total: run.total,
    done: 0,
    succeeded: 0,
    failed: 0,
    ...(run.since ? { since: run.since } : {}),
  };
  await store.put(layout.run(schedule, run.jobId, run.createdAt), JSON.stringify(entry), { ifAbsent: true, contentType: 'application/json' });
}

/**
 * Writes a finished run's entry from its manifest and, when it completed, makes it the schedule's
 * last completed run (unless a newer run completed first). Idempotent.
 *
 * @example
 * if (job.schedule) await recordRunFinished(store, job, manifest);
 */
export async function recordRunFinished(store: ObjectStore, job: JobMeta, manifest: Manifest): Promise<void> {
  const schedule = job.schedule!;
  const entry: RunEntry = {
    jobId: job.jobId,
    schedule,
    state: manifest.state,
    createdAt: job.createdAt,
    finishedAt: manifest.finishedAt,
    durationMs: Date.parse(manifest.finishedAt) - Date.parse(job.createdAt),
    total: manifest.total,
    done: manifest.done,
    succeeded: manifest.succeeded,
    failed: manifest.failed,
    ...(manifest.since ? { since: manifest.since, changes: manifest.changes, bytesSaved: manifest.bytesSaved } : {}),
  };
  await store.put(layout.run(schedule, job.jobId, job.createdAt), JSON.stringify(entry), { contentType: 'application/json' });
  if (manifest.state !== 'completed') return;
  const last = await readLastRun(store, schedule);
  if (last && last.createdAt > job.createdAt) return;
  await store.put(layout.lastRun(schedule), JSON.stringify({ jobId: job.jobId, createdAt: job.createdAt, finishedAt: manifest.finishedAt }), {
    contentType: 'application/json',
  });
}

async function readLastRun(store: ObjectStore, schedule: string): Promise<{ jobId: string; createdAt: string; finishedAt: string } | null> {
  const data = await store.get(layout.lastRun(schedule));
  return data ? JSON.parse(data.toString('utf8')) : null;
}

/**
 * The schedule's last completed run (the default baseline of its next run), in one GET.
 *
 * @example
 * const since = await lastCompletedRun(store, 'nightly'); // job id or null
 */
export async function lastCompletedRun(store: ObjectStore, schedule: string): Promise<{ jobId: string; createdAt: string; finishedAt: string } | null> {
  return readLastRun(store, schedule);
}

/**
 * A page of a schedule's runs, newest first: one LIST page and one GET per run (runs still going
 * are read live, at the constant cost of a status).
 *
 * @throws {QueryError} for a cursor that is not one of ours.
 * @example
 * const { runs, next } = await listRuns(store, 'nightly', { limit: 10 });
 */
export async function listRuns(store: ObjectStore, schedule: string, { cursor, limit }: { cursor?: string; limit?: number } = {}): Promise<RunsPage> {
  checkScheduleName(schedule);
  const size = Math.min(Math.max(1, limit ?? RUNS_DEFAULTS.pageSize), RUNS_DEFAULTS.maxPageSize);
  let startAfter: string | undefined;
  if (cursor !== undefined) {
    const name = Buffer.from(cursor, 'base64url').toString('utf8');
    if (!RUN_FILE.test(name)) throw new QueryError('"cursor" is not a cursor of this list', 'cursor');
    startAfter = layout.runsPrefix(schedule) + name;
  }
  const keys: string[] = [];
  for await (const key of store.list(layout.runsPrefix(schedule), startAfter ? { startAfter } : {})) {
    if (!RUN_FILE.test(key.slice(key.lastIndexOf('/') + 1))) continue;
    keys.push(key);
    if (keys.length > size) break;
  }
  const page = keys.slice(0, size);
  const runs = await Promise.all(
    page.map(async (key) => {
      const data = await store.get(key);
      if (!data) return null;
      const entry = JSON.parse(data.toString('utf8')) as RunEntry;
      if (entry.finishedAt !== null || entry.state === 'rejected') return entry;
      try {
        return entryFromStatus(schedule, await jobStatus(store, entry.jobId));
      } catch {
        return entry;
      }
    }),
  );
  const last = page[page.length - 1];
  return {
    schedule,
    runs: runs.filter((r): r is RunEntry => r !== null),
    next: keys.length > size && last ? Buffer.from(last.slice(last.lastIndexOf('/') + 1)).toString('base64url') : null,
  };
}
