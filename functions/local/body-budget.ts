/**
 * A worker's total body memory. Each job's chunks in a worker share `concurrency` x `maxBodyBytes`
 * (Fetcher.acquire), but a worker took up to 16 chunks of different jobs at once: three jobs of
 * 16 x 32 MiB each passed the per-job check and `fanout serve` peaked at 3 GB. Here a chunk of a job
 * not yet in hand starts only while the jobs in hand, with it, stay within the budget (a job's weight:
 * concurrency x maxBodyBytes when bodies are kept, as MEMORY_LIMITS counts it); one job is always let in.
 */
import { loadJob } from '../core/job.ts';
import { MEMORY_LIMITS, type JobOptions } from '../core/options.ts';
import type { ObjectStore } from '../core/ports.ts';

export const BODY_BUDGET_DEFAULTS = {
  /** Body bytes one worker (loop or thread) may hold over all its jobs: the same bound as one job's. */
  maxHeldBodyBytes: MEMORY_LIMITS.maxHeldBodyBytes,
} as const;

/** The bytes of bodies a job's chunks may hold at once in a worker. */
export function bodyWeight(options: Pick<JobOptions, 'concurrency' | 'maxBodyBytes' | 'bodies'>): number {
  return options.bodies === 'none' ? 0 : options.concurrency * options.maxBodyBytes;
}

export class BodyBudget {
  /** Jobs with chunks in hand: their weight and how many chunks. */
  private readonly inHand = new Map<string, { weight: number; chunks: number }>();
  private wakers: (() => void)[] = [];
  /** Chunks waiting for room. */
  waiting = 0;
  /** The most bytes and jobs ever in hand at once (tests and metrics read them). */
  peakBytes = 0;
  peakJobs = 0;

  constructor(
    private readonly store: ObjectStore,
    readonly limit: number = BODY_BUDGET_DEFAULTS.maxHeldBodyBytes,
  ) {}

  /** Bytes of the jobs in hand. */
  get used(): number {
    let sum = 0;
    for (const { weight } of this.inHand.values()) sum += weight;
    return sum;
  }

  /**
   * Waits until the message may be processed; call the returned function when it is done.
   * Messages other than chunks (plan, finalize, callback) pass at once.
   *
   * @example const release = await budget.admit(message.body); try { ... } finally { release(); }
   */
  async admit(body: string): Promise<() => void> {
    const jobId = await this.chunkJob(body);
    if (jobId === undefined) return () => {};
    const weight = await this.weightOf(jobId);
    for (;;) {
      const held = this.inHand.get(jobId);
      if (held) {
        held.chunks++;
        break;
      }
      if (this.inHand.size === 0 || this.used + weight <= this.limit) {
        this.inHand.set(jobId, { weight, chunks: 1 });
        this.peakBytes = Math.max(this.peakBytes, this.used);
        this.peakJobs = Math.max(this.peakJobs, this.inHand.size);
        break;
      }
      this.waiting++;
      await new Promise<void>((resolve) => this.wakers.push(resolve));
      this.waiting--;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const held = this.inHand.get(jobId)!;
      if (--held.chunks > 0) return;
      this.inHand.delete(jobId);
      const wakers = this.wakers;
      this.wakers = [];
      for (const wake of wakers) wake();
    };
  }

  private async chunkJob(body: string): Promise<string | undefined> {
    try {
      const message = JSON.parse(body) as { type?: unknown; jobId?: unknown };
      return message.type === 'chunk' && typeof message.jobId === 'string' ? message.jobId : undefined;
    } catch {
      return undefined; // the handler reports it
    }
  }

  private async weightOf(jobId: string): Promise<number> {
    try {
      return bodyWeight((await loadJob(this.store, jobId)).options);
    } catch {
      return 0; // no such job: the handler reports it, and holds no bodies
    }
  }
}
