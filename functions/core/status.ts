/**
 * Job status and the manifest. Each finished chunk leaves a summary (chunks/CHUNK.json) computed
 * from its own result file and adds the same counts to the job's ledger (core/ledger.ts), so the
 * sums equal the records; status and the manifest read the ledger, never the summaries.
 */
import { emptyChanges, type ChangeCounts, type Counts } from './counts.ts';
import { NotFoundError } from './errors.ts';
import { loadJob, type JobMeta } from './job.ts';
import type { PlanningMeta } from './plan-slices.ts';
import { layout } from './layout.ts';
import { latencySummary, type LatencySummary } from './latency.ts';
import { ledgerFor, type Ledger, type LedgerProgress } from './ledger.ts';
import type { JobOptions } from './options.ts';
import type { ObjectStore } from './ports.ts';
import { redactOptions } from './redact.ts';
import { wasStarted } from './started.ts';

/** `planning` and `rejected` belong to lists planned in slices (large uploads on AWS). */
export type JobState = 'planning' | 'rejected' | 'queued' | 'running' | 'completed' | 'cancelled';

/** What a finished chunk leaves behind: its counts and when it was written. */
export interface ChunkSummary extends Counts {
  chunk: number;
  writtenAt: string;
}

export interface JobStatus {
  jobId: string;
  state: JobState;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  total: number;
  done: number;
  succeeded: number;
  failed: number;
  chunks: { total: number; done: number };
  byStatus: Record<string, number>;
  byError: Record<string, number>;
  latencyMs: LatencySummary;
  /** The wait for a connection slot (the records' `queuedMs`), apart from `latencyMs`. */
  queuedMs: LatencySummary;
  /** Seconds all records waited for a connection slot, summed. */
  queuedSeconds: number;
  /** Seconds all requests took (their `durationMs`), summed: compare with `queuedSeconds`. */
  durationSeconds: number;
  bytes: number;
  cancelRequested: boolean;
  source: string | null;
  /** The job's options as submitted, sensitive header values redacted (absent while a job is planned). */
  options?: JobOptions;
  results: { manifest: string | null; files: string[] };
  /** Chunks counted as failed whose records could not be written (see Manifest). */
  lostChunks?: number[];
  /** The schedule that started the job (contract name `schedule`). */
  schedule?: string;
  /** With a baseline (option `since`): the baseline's job id, how the records compare with it, and the bytes 304s saved. */
  since?: string;
  changes?: ChangeCounts;
  bytesSaved?: number;
  /** Why a job was rejected while being planned (the bad line). */
  error?: { message: string; line?: number; field?: string };
}

export interface Manifest {
  jobId: string;
  state: 'completed' | 'cancelled';
  createdAt: string;
  finishedAt: string;
  total: number;
  done: number;
  succeeded: number;
  failed: number;
  chunks: number;
  byStatus: Record<string, number>;
  byError: Record<string, number>;
  latencyMs: LatencySummary;
  latency: Counts['latency'];
  queuedMs: LatencySummary;
  queued: Counts['queued'];
  queuedSeconds: number;
  durationSeconds: number;
  bytes: number;
  files: string[];
  /** Chunks whose records could not be written even as chunk_failed (counted as failed; no file). */
  lostChunks?: number[];
  schedule?: string;
  since?: string;
  changes?: ChangeCounts;
  bytesSaved?: number;
}

/**
 * The status fields of a scheduled run and of a job with a baseline (none for other jobs).
 *
 * @example
 * comparisonFields(job, counts) // { schedule: 'nightly', since: '0190...', changes: { new: 0, ... }, bytesSaved: 5120 }
 */
export function comparisonFields(job: JobMeta, counts: Pick<Counts, 'changes' | 'bytesSaved'>): Pick<JobStatus, 'schedule' | 'since' | 'changes' | 'bytesSaved'> {
  return {
    ...(job.schedule ? { schedule: job.schedule } : {}),
    ...(job.options.since ? { since: job.options.since, changes: { ...emptyChanges(), ...counts.changes }, bytesSaved: counts.bytesSaved ?? 0 } : {}),
  };
}

/** The wait for connection slots and the request time, from counts, as status and manifest show them. */
function waitFigures(counts: Counts): Pick<JobStatus, 'queuedMs' | 'queuedSeconds' | 'durationSeconds'> {
  const seconds = (ms: number | undefined) => Math.round(ms ?? 0) / 1000;
  return { queuedMs: latencySummary(counts.queued ?? {}), queuedSeconds: seconds(counts.queuedTotalMs), durationSeconds: seconds(counts.durationTotalMs) };
}

function allResultFiles(jobId: string, chunks: number, lost: number[]): string[] {
  const skip = new Set(lost);
  return Array.from({ length: chunks }, (_, c) => c).filter((c) => !skip.has(c)).map((c) => layout.results(jobId, c));
}

/**
 * The manifest of a job whose chunks are all counted, built from the ledger (no summary is read).
 *
 * @example
 * const manifest = buildManifest(job, await ledger.progress(job.jobId), cancelled);
 */
export function buildManifest(job: JobMeta, progress: LedgerProgress, cancelled: boolean): Manifest {
  const { counts, lostChunks } = progress;
  return {
    jobId: job.jobId,
    state: cancelled && counts.byError.cancelled ? 'cancelled' : 'completed',
    createdAt: job.createdAt,
    finishedAt: new Date().toISOString(),
    total: job.total,
    done: counts.count,
    succeeded: counts.succeeded,
    failed: counts.failed,
    chunks: job.chunks,
    byStatus: counts.byStatus,
    byError: counts.byError,
    latencyMs: latencySummary(counts.latency),
    latency: counts.latency,
    ...waitFigures(counts),
    queued: counts.queued ?? {},
    bytes: counts.bytes,
    files: allResultFiles(job.jobId, job.chunks, lostChunks),
    ...(lostChunks.length > 0 ? { lostChunks } : {}),
    ...comparisonFields(job, counts),
  };
}

export async function readManifest(store: ObjectStore, jobId: string): Promise<Manifest | null> {
  const data = await store.get(layout.manifest(jobId));
  return data ? (JSON.parse(data.toString('utf8')) as Manifest) : null;
}

/**
 * The status of a job, as GET /jobs/:id answers it. Constant cost: job.json (cached), the manifest,
 * the cancel marker and one ledger read, whatever the job's size.
 *
 * @param ledger the runtime's ledger (default: the one bound to `store`, see core/ledger.ts).
 * @throws {NotFoundError} when there is no such job.
 * @example
 * const status = await jobStatus(store, jobId); // status.done === status.succeeded + status.failed
 */
export async function jobStatus(store: ObjectStore, jobId: string, ledger: Ledger = ledgerFor(store)): Promise<JobStatus> {
  let job: JobMeta;
  try {
    job = await loadJob(store, jobId);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    return planningStatus(store, jobId, error);
  }
  const manifest = await readManifest(store, jobId);
  if (manifest) return statusFromManifest(job, manifest);
  const [{ counts, chunksDone, lostChunks, updatedAt }, cancelRequested] = await Promise.all([
    ledger.progress(jobId),
    store.exists(layout.cancel(jobId)),
  ]);
  // Running from the first chunk a worker received (one more read, only while none is done).
  const started = chunksDone > 0 || cancelRequested || (await wasStarted(store, jobId));
  return {
    jobId,
    state: started ? 'running' : 'queued',
    createdAt: job.createdAt,
    updatedAt: updatedAt ?? job.createdAt,
    finishedAt: null,
    total: job.total,
    done: counts.count,
    succeeded: counts.succeeded,
    failed: counts.failed,
    chunks: { total: job.chunks, done: chunksDone },
    byStatus: counts.byStatus,
    byError: counts.byError,
    latencyMs: latencySummary(counts.latency),
    ...waitFigures(counts),
    bytes: counts.bytes,
    cancelRequested,
    source: job.source ?? null,
    options: redactOptions(job.options),
    // Which chunks are done is not kept per call (it would cost O(chunks)): files appear once complete.
    results: { manifest: null, files: [] },
    ...(lostChunks.length > 0 ? { lostChunks } : {}),
    ...comparisonFields(job, counts),
  };
}

/** Status of a job with no job.json yet: being planned in slices, or rejected. */
async function planningStatus(store: ObjectStore, jobId: string, notFound: NotFoundError): Promise<JobStatus> {
  const data = await store.get(layout.planning(jobId));
  if (!data) throw notFound;
  const meta = JSON.parse(data.toString('utf8')) as PlanningMeta;
  const rejected = await store.get(layout.rejected(jobId));
  return {
    jobId,
    state: rejected ? 'rejected' : 'planning',
    createdAt: meta.createdAt,
    updatedAt: meta.createdAt,
    finishedAt: null,
    total: 0,
    done: 0,
    succeeded: 0,
    failed: 0,
    chunks: { total: 0, done: 0 },
    byStatus: {},
    byError: {},
    latencyMs: { p50: null, p95: null, p99: null },
    queuedMs: { p50: null, p95: null, p99: null },
    queuedSeconds: 0,
    durationSeconds: 0,
    bytes: 0,
    cancelRequested: false,
    source: meta.source,
    ...(meta.schedule ? { schedule: meta.schedule.name } : {}),
    results: { manifest: null, files: [] },
    ...(rejected ? { error: JSON.parse(rejected.toString('utf8')) as JobStatus['error'] } : {}),
  };
}

export function statusFromManifest(job: JobMeta, manifest: Manifest): JobStatus {
  return {
    jobId: job.jobId,
    state: manifest.state,
    createdAt: job.createdAt,
    updatedAt: manifest.finishedAt,
    finishedAt: manifest.finishedAt,
    total: manifest.total,
    done: manifest.done,
    succeeded: manifest.succeeded,
    failed: manifest.failed,
    chunks: { total: manifest.chunks, done: manifest.chunks },
    byStatus: manifest.byStatus,
    byError: manifest.byError,
    latencyMs: manifest.latencyMs,
    // Manifests written before the wait was counted lack these.
    queuedMs: manifest.queuedMs ?? { p50: null, p95: null, p99: null },
    queuedSeconds: manifest.queuedSeconds ?? 0,
    durationSeconds: manifest.durationSeconds ?? 0,
    bytes: manifest.bytes,
    cancelRequested: manifest.state === 'cancelled',
    source: job.source ?? null,
    options: redactOptions(job.options),
    results: { manifest: layout.manifest(job.jobId), files: manifest.files },
    ...(manifest.lostChunks?.length ? { lostChunks: manifest.lostChunks } : {}),
    ...comparisonFields(job, manifest),
  };
}
