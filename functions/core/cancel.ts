/**
 * Cancelling a job: a marker in the store that every worker watches. Chunks not yet fetched then
 * get `cancelled` records (their workers write them without fetching), in-flight requests are
 * aborted, and the job ends as `cancelled` with one record per line like any other.
 */
import { setMaxListeners } from 'node:events';
import { finishJob, type FinishDeps } from './finish.ts';
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import { ledgerFor } from './ledger.ts';
import type { ObjectStore } from './ports.ts';
import type { Manifest } from './status.ts';

/**
 * Marks a job cancelled.
 *
 * @param deps the runtime's ledger and queue (default: the ledger bound to the store, no queue).
 * @returns false when the job had already ended; the manifest when cancelling finished it at once.
 * @throws {NotFoundError} when there is no such job.
 * @example
 * const { cancelled } = await cancelJob(store, jobId, { ledger, queue });
 */
export async function cancelJob(
  store: ObjectStore,
  jobId: string,
  deps: Omit<FinishDeps, 'store'> = {},
): Promise<{ cancelled: boolean; manifest: Manifest | null }> {
  const job = await loadJob(store, jobId);
  if (await store.exists(layout.manifest(jobId))) return { cancelled: false, manifest: null };
  await store.put(layout.cancel(jobId), JSON.stringify({ cancelledAt: new Date().toISOString() }), {
    ifAbsent: true,
    contentType: 'application/json',
  });
  // A job whose chunks were all done before the marker landed finishes now.
  const ledger = deps.ledger ?? ledgerFor(store);
  if ((await ledger.progress(jobId)).chunksDone < job.chunks) return { cancelled: true, manifest: null };
  return { cancelled: true, manifest: await finishJob({ ...deps, store, ledger }, job, 'cancel') };
}

/**
 * Per-job abort signals inside one process (the embedded runtime's threads abort their in-flight
 * requests at once instead of waiting for the next poll of the cancel marker).
 *
 * @example
 * const cancels = new CancelRegistry();
 * const deps = { ..., cancelSignal: (jobId) => cancels.signal(jobId) };
 * cancels.cancel(jobId);
 */
export class CancelRegistry {
  private readonly controllers = new Map<string, AbortController>();

  private controller(jobId: string): AbortController {
    let controller = this.controllers.get(jobId);
    if (!controller) {
      controller = new AbortController();
      setMaxListeners(0, controller.signal); // one listener per chunk in flight
      this.controllers.set(jobId, controller);
    }
    return controller;
  }

  signal(jobId: string): AbortSignal {
    return this.controller(jobId).signal;
  }

  cancel(jobId: string): void {
    this.controller(jobId).abort(new Error('cancelled'));
  }

  /** Drops a finished job's signal. */
  forget(jobId: string): void {
    this.controllers.delete(jobId);
  }
}
