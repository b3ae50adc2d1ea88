/**
 * `fanout jobs|status|results|cancel` without an API: the same answers as the API's, read straight
 * from the local data folder with the core functions (jobStatus, readResults, cancelJob).
 */
import { Readable } from 'node:stream';
import { cancelJob } from '../core/cancel.ts';
import { AddressGuard } from '../core/engine/guard.ts';
import { UsageError } from '../core/errors.ts';
import { JOBS_PREFIX, isJobId } from '../core/layout.ts';
import { readResultLines, readResults, recordFilter, type RecordQuery } from '../core/results.ts';
import { jobStatus, type JobStatus } from '../core/status.ts';
import type { FetchRecord } from '../core/record.ts';
import { LocalStore } from '../local/local-store.ts';
import { lockDataDir, lockHolder } from '../local/lock.ts';
import { EmbeddedRuntime } from '../local/runtime.ts';
import { localCallbackSecret } from '../local/environment.ts';

/** What the client commands need of a place that holds jobs: the API, or this folder. */
export interface JobsBackend {
  status(jobId: string): Promise<JobStatus>;
  jobs(limit: number): Promise<{ jobs: JobStatus[]; next: string | null }>;
  results(jobId: string, filters: URLSearchParams): Promise<Readable>;
  cancel(jobId: string): Promise<JobStatus>;
  /** Where the jobs are, for messages. */
  readonly where: string;
  /**
   * Whether anything runs jobs here now (a process holds the folder); undefined where that is not
   * a question (an API runs its jobs).
   */
  running?(jobId: string): boolean;
}

/** The jobs of a local data folder. */
export class LocalJobs implements JobsBackend {
  readonly store: LocalStore;

  constructor(readonly dataDir: string) {
    this.store = new LocalStore(dataDir);
  }

  get where(): string {
    return this.dataDir;
  }

  status(jobId: string): Promise<JobStatus> {
    return jobStatus(this.store, jobId);
  }

  /** A local job runs only while a process (`serve`, `fetch`, `resume`) holds the folder. */
  running(): boolean {
    return lockHolder(this.dataDir) !== null;
  }

  /** Jobs newest first (job ids are time-ordered UUIDv7s). */
  async jobs(limit: number): Promise<{ jobs: JobStatus[]; next: string | null }> {
    const ids = (await this.store.listPrefixes(JOBS_PREFIX))
      .map((p) => p.slice(JOBS_PREFIX.length, -1))
      .filter(isJobId)
      .sort()
      .reverse();
    const jobs: JobStatus[] = [];
    for (const id of ids) {
      if (jobs.length === limit) return { jobs, next: jobs.at(-1)!.jobId };
      try {
        jobs.push(await jobStatus(this.store, id));
      } catch {
        // a folder without job.json: a submission that never finished planning
      }
    }
    return { jobs, next: null };
  }

  async results(jobId: string, filters: URLSearchParams): Promise<Readable> {
    await jobStatus(this.store, jobId); // NotFoundError before any output
    const filter = recordFilter(Object.fromEntries(filters) as RecordQuery);
    if (!filter) return Readable.from(readResults(this.store, jobId));
    const store = this.store;
    return Readable.from(
      (async function* () {
        for await (const line of readResultLines(store, jobId)) if (filter(JSON.parse(line) as FetchRecord)) yield line + '\n';
      })(),
    );
  }

  /**
   * Cancels a job. When a process holds the folder (`fanout serve`, a `fetch`), it sees the marker
   * and writes the `cancelled` records; otherwise this process does, at once, without fetching.
   *
   * @throws {UsageError} when the job had already ended.
   */
  async cancel(jobId: string): Promise<JobStatus> {
    // Nobody runs jobs from the folder: this process finishes the job (taking the lock first, which
    // also clears temporary files, so it comes before any write).
    const lock = lockHolder(this.dataDir) ? undefined : lockDataDir(this.dataDir, 'fanout cancel');
    try {
      const { cancelled } = await cancelJob(this.store, jobId);
      if (!cancelled) throw new UsageError(`job ${jobId} has already ended`);
      if (!lock) return await this.status(jobId); // the holder sees the marker and finishes it
      // Its callback is signed as serve signs it.
      const runtime = new EmbeddedRuntime({ dataDir: this.dataDir, store: this.store, guard: AddressGuard.fromEnv(process.env, true), callbackSecret: localCallbackSecret() });
      runtime.on('error', (error, context) => process.stderr.write(`fanout: warning: ${context}: ${(error as Error).message}\n`));
      try {
        await runtime.resume(jobId);
        runtime.start(0);
        await runtime.waitForJob(jobId);
      } finally {
        await runtime.stop();
      }
      return await this.status(jobId);
    } finally {
      lock?.release();
    }
  }
}
