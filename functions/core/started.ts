/**
 * The `started` mark of a job: written when a worker first receives one of its chunks, so status
 * says `running` while the first chunks are fetched (it said `queued, done 0` for 28 s with big
 * bodies; the ledger moves only when a chunk completes). One conditional write per job in each
 * worker process (a Lambda container, a thread), not one per chunk.
 */
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';

/** Jobs this process has marked already; bounded, as a long-lived worker sees many jobs. */
const marked = new Set<string>();
const MARKED_LIMIT = 10_000;

/**
 * Marks the job started (once; later calls in this process cost nothing).
 *
 * @example await markStarted(store, jobId); // before fetching a chunk
 */
export async function markStarted(store: ObjectStore, jobId: string): Promise<void> {
  if (marked.has(jobId)) return;
  await store.put(layout.started(jobId), JSON.stringify({ startedAt: new Date().toISOString() }), { ifAbsent: true, contentType: 'application/json' });
  if (marked.size >= MARKED_LIMIT) marked.clear();
  marked.add(jobId);
}

/** True once a worker has received a chunk of the job. */
export function wasStarted(store: ObjectStore, jobId: string): Promise<boolean> {
  return store.exists(layout.started(jobId));
}
