/**
 * Finishing a job: once the ledger reports every chunk counted, one finisher writes the manifest
 * (created only if absent, after the ledger's claim) and hands the completion callback to the queue
 * through an outbox entry, so the callback survives the finisher dying right after the manifest.
 */
import { callbackMessage, writeCallbackOutbox } from './callback.ts';
import type { JobMeta } from './job.ts';
import { layout } from './layout.ts';
import { ledgerFor, type Ledger } from './ledger.ts';
import type { ObjectStore, Queue } from './ports.ts';
import { buildManifest, readManifest, type Manifest } from './status.ts';

export interface FinishDeps {
  store: ObjectStore;
  /** Default: the ledger bound to the store (core/ledger.ts). */
  ledger?: Ledger;
  /** Where the `callback` message goes; without a queue the outbox entry waits for a recover(). */
  queue?: Pick<Queue, 'send'>;
  /** Called once, by the finisher that created the manifest. */
  onJobFinished?: (manifest: Manifest) => void | Promise<void>;
}

/**
 * Writes the manifest of a job whose chunks are all counted, if this caller may finish it.
 * Safe to repeat: a repeat (a redelivery of the finishing message) re-sends the callback message,
 * which the callback handler ignores once delivered.
 *
 * @param owner who finishes: the same owner may claim again (its own redelivery), another may not.
 * @returns the manifest when this call created it, null otherwise.
 * @example
 * if ((await ledger.recordChunk(job, chunk, counts)).complete) await finishJob(deps, job, `chunk#${chunk}`);
 */
export async function finishJob(deps: FinishDeps, job: JobMeta, owner: string): Promise<Manifest | null> {
  const { store } = deps;
  const ledger = deps.ledger ?? ledgerFor(store);
  if (!(await ledger.claimFinish(job.jobId, owner))) return null;
  let created: Manifest | null = null;
  if (!(await readManifest(store, job.jobId))) {
    const progress = await ledger.progress(job.jobId);
    if (progress.chunksDone < job.chunks) return null;
    // The outbox entry comes before the manifest: a restart that finds a manifest finds the entry.
    if (job.options.callbackUrl) await writeCallbackOutbox(store, job.jobId);
    const manifest = buildManifest(job, progress, await store.exists(layout.cancel(job.jobId)));
    const wrote = await store.put(layout.manifest(job.jobId), JSON.stringify(manifest, null, 2), {
      ifAbsent: true,
      contentType: 'application/json',
    });
    if (wrote) created = manifest;
  }
  if (job.options.callbackUrl && deps.queue) await deps.queue.send([callbackMessage(job.jobId)]);
  if (created) {
    ledger.forget?.(job.jobId);
    await deps.onJobFinished?.(created);
  }
  return created;
}
