/**
 * Cancelling a job: a marker in the store that every worker watches. Chunks not yet fetched then
 * get `cancelled` records (their workers write them without fetching), in-flight requests are
 * aborted, and the job ends as `cancelled` with one record per line like any other.
 */
import { loadJob } from './job.ts';
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';
import { finalizeIfComplete, type Manifest } from './status.ts';

/**
 * Marks a job cancelled.
 *
 * @returns false when the job had already ended; the manifest when cancelling finished it at once.
 * @throws {NotFoundError} when there is no such job.
 */
export async function cancelJob(store: ObjectStore, jobId: string): Promise<{ cancelled: boolean; manifest: Manifest | null }> {
  const job = await loadJob(store, jobId);
  if (await store.exists(layout.manifest(jobId))) return { cancelled: false, manifest: null };
  await store.put(layout.cancel(jobId), JSON.stringify({ cancelledAt: new Date().toISOString() }), {
    ifAbsent: true,
    contentType: 'application/json',
  });
  // A job whose chunks were all done before the marker landed finishes now.
  return { cancelled: true, manifest: await finalizeIfComplete(store, job) };
}
