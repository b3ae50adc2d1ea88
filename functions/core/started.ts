/**
 * The `started` mark of a job: written when a worker first receives one of its chunks, so status
 * says `running` while the first chunks are fetched (it said `queued, done 0` for 28 s with big
 * bodies; the ledger moves only when a chunk completes). One conditional write per job in each
 * worker process (a Lambda container, a thread), not one per chunk.
 */
import { layout } from './layout.ts';
import type { ObjectStore } from './ports.ts';

/**
 * Jobs this process has marked, or is marking: the chunks a worker receives at once share one write
 * (a job's first wave used to write it once per chunk in flight: 16 conditional puts, each a
 * temporary file locally). Bounded, as a long-lived worker sees many jobs.
 */
const marks = new Map<string, Promise<void>>();
const MARKED_LIMIT = 10_000;

/**
 * Marks the job started (once; later calls in this process wait for that write or cost nothing).
 * A write that fails is forgotten, and the chunks that were waiting for it try once more (sharing
 * that second write), so one failure does not leave a whole first wave unmarked.
 *
 * @example await markStarted(store, jobId); // before fetching a chunk
 */
export async function markStarted(store: ObjectStore, jobId: string): Promise<void> {
  const known = marks.get(jobId);
  if (known) return known.catch(() => shareMark(store, jobId));
  return shareMark(store, jobId);
}

/** The job's mark being written (or written), else a new write that later calls share. */
function shareMark(store: ObjectStore, jobId: string): Promise<void> {
  const known = marks.get(jobId);
  if (known) return known;
  if (marks.size >= MARKED_LIMIT) marks.clear();
  const mark = store
    .put(layout.started(jobId), JSON.stringify({ startedAt: new Date().toISOString() }), { ifAbsent: true, contentType: 'application/json' })
    .then(
      () => {},
      (error: unknown) => {
        if (marks.get(jobId) === mark) marks.delete(jobId);
        throw error;
      },
    );
  marks.set(jobId, mark);
  return mark;
}

/** True once a worker has received a chunk of the job. */
export function wasStarted(store: ObjectStore, jobId: string): Promise<boolean> {
  return store.exists(layout.started(jobId));
}
