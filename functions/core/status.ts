/**
 * Job status and the manifest, both aggregated from the store: each finished chunk leaves a
 * summary (chunks/CHUNK.json) computed from its own result file, so the sums always equal the
 * records. The manifest is written once, by whoever first sees every chunk done.
 */
import { addCounts, emptyCounts, type Counts } from './counts.ts';
import { NotFoundError } from './errors.ts';
import { loadJob, type JobMeta } from './job.ts';
import type { PlanningMeta } from './plan-slices.ts';
import { layout } from './layout.ts';
import { latencySummary, type LatencySummary } from './latency.ts';
import type { ObjectStore } from './ports.ts';

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
  bytes: number;
  cancelRequested: boolean;
  source: string | null;
  results: { manifest: string | null; files: string[] };
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
  bytes: number;
  files: string[];
}

/** Chunk summaries never change once written: cached per process, bounded. */
const summaryCache = new Map<string, ChunkSummary>();
const SUMMARY_CACHE_LIMIT = 50_000;
/** Summaries read at once when aggregating. */
const READ_CONCURRENCY = 32;

async function readSummary(store: ObjectStore, key: string): Promise<ChunkSummary | null> {
  const cached = summaryCache.get(key);
  if (cached) return cached;
  const data = await store.get(key);
  if (!data) return null;
  const summary = JSON.parse(data.toString('utf8')) as ChunkSummary;
  if (summaryCache.size >= SUMMARY_CACHE_LIMIT) summaryCache.delete(summaryCache.keys().next().value!);
  summaryCache.set(key, summary);
  return summary;
}

export interface Aggregate {
  counts: Counts;
  chunksDone: number[];
  lastWrittenAt: string | null;
}

/** Sums the summaries of every finished chunk of a job. */
export async function aggregateChunks(store: ObjectStore, jobId: string): Promise<Aggregate> {
  const keys: string[] = [];
  for await (const key of store.list(layout.chunksPrefix(jobId))) if (key.endsWith('.json')) keys.push(key);
  const counts = emptyCounts();
  const chunksDone: number[] = [];
  let lastWrittenAt: string | null = null;
  for (let i = 0; i < keys.length; i += READ_CONCURRENCY) {
    const summaries = await Promise.all(keys.slice(i, i + READ_CONCURRENCY).map((k) => readSummary(store, k)));
    for (const summary of summaries) {
      if (!summary) continue;
      addCounts(counts, summary);
      chunksDone.push(summary.chunk);
      if (lastWrittenAt === null || summary.writtenAt > lastWrittenAt) lastWrittenAt = summary.writtenAt;
    }
  }
  return { counts, chunksDone, lastWrittenAt };
}

function resultFiles(jobId: string, chunks: number[]): string[] {
  return [...chunks].sort((a, b) => a - b).map((c) => layout.results(jobId, c));
}

/**
 * Writes manifest.json if every chunk of the job is done and nobody wrote it yet.
 *
 * @returns the manifest when this call wrote it, null otherwise.
 */
export async function finalizeIfComplete(store: ObjectStore, job: JobMeta): Promise<Manifest | null> {
  const manifestKey = layout.manifest(job.jobId);
  if (await store.exists(manifestKey)) return null;
  // Count the summaries by listing first (one LIST per 1,000 chunks): reading them all on every
  // chunk's completion would cost chunks x chunks GETs on a large job.
  let finished = 0;
  for await (const key of store.list(layout.chunksPrefix(job.jobId))) if (key.endsWith('.json')) finished++;
  if (finished < job.chunks) return null;
  const { counts, chunksDone } = await aggregateChunks(store, job.jobId);
  if (chunksDone.length < job.chunks) return null;
  const cancelled = await store.exists(layout.cancel(job.jobId));
  const manifest: Manifest = {
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
    bytes: counts.bytes,
    files: resultFiles(job.jobId, chunksDone),
  };
  const created = await store.put(manifestKey, JSON.stringify(manifest, null, 2), {
    ifAbsent: true,
    contentType: 'application/json',
  });
  return created ? manifest : null;
}

export async function readManifest(store: ObjectStore, jobId: string): Promise<Manifest | null> {
  const data = await store.get(layout.manifest(jobId));
  return data ? (JSON.parse(data.toString('utf8')) as Manifest) : null;
}

/**
 * The status of a job, as GET /jobs/:id answers it.
 *
 * @throws {NotFoundError} when there is no such job.
 * @example
 * const status = await jobStatus(store, jobId); // status.done === status.succeeded + status.failed
 */
export async function jobStatus(store: ObjectStore, jobId: string): Promise<JobStatus> {
  let job: JobMeta;
  try {
    job = await loadJob(store, jobId);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    return planningStatus(store, jobId, error);
  }
  const manifest = await readManifest(store, jobId);
  if (manifest) return statusFromManifest(job, manifest);
  const [{ counts, chunksDone, lastWrittenAt }, cancelRequested] = await Promise.all([
    aggregateChunks(store, jobId),
    store.exists(layout.cancel(jobId)),
  ]);
  return {
    jobId,
    state: chunksDone.length > 0 || cancelRequested ? 'running' : 'queued',
    createdAt: job.createdAt,
    updatedAt: lastWrittenAt ?? job.createdAt,
    finishedAt: null,
    total: job.total,
    done: counts.count,
    succeeded: counts.succeeded,
    failed: counts.failed,
    chunks: { total: job.chunks, done: chunksDone.length },
    byStatus: counts.byStatus,
    byError: counts.byError,
    latencyMs: latencySummary(counts.latency),
    bytes: counts.bytes,
    cancelRequested,
    source: job.source ?? null,
    results: { manifest: null, files: resultFiles(jobId, chunksDone) },
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
    bytes: 0,
    cancelRequested: false,
    source: meta.source,
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
    bytes: manifest.bytes,
    cancelRequested: manifest.state === 'cancelled',
    source: job.source ?? null,
    results: { manifest: layout.manifest(job.jobId), files: manifest.files },
  };
}
