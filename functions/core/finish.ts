/**
 * Finishing a job: once the ledger reports every chunk counted, one finisher writes the manifest
 * (created only if absent, after the ledger's claim) and hands the completion callback to the queue
 * through an outbox entry, so the callback survives the finisher dying right after the manifest.
 */
import { callbackMessage, writeCallbackOutbox } from './callback.ts';
import type { JobMeta } from './job.ts';
import { recordRunFinished } from './runs.ts';
import { layout } from './layout.ts';
import { ledgerFor, type Ledger } from './ledger.ts';
import type { ObjectStore, Queue } from './ports.ts';
import { buildManifest, readManifest, statusFromManifest, type JobStatus, type Manifest } from './status.ts';

export interface FinishDeps {
  store: ObjectStore;
  /** Default: the ledger bound to the store (core/ledger.ts). */
  ledger?: Ledger;
  /** Where the `callback` message goes; without a queue the outbox entry waits for a recover(). */
  queue?: Pick<Queue, 'send'>;
  /** Called once, by the finisher that created the manifest. */
  onJobFinished?: (manifest: Manifest) => void | Promise<void>;
  /**
   * Announces the finished job (AWS: an EventBridge event), before the manifest is written, so a
   * failure is retried by the message's redelivery (at least once). Skipped when the schedule's
   * `alertOn` finds nothing to alert on.
   */
  publish?: (status: JobStatus) => Promise<void>;
}

/**
 * True when a finished job should be announced (callback, event): always, unless its schedule set
 * `alertOn` and none of those change counts is above zero.
 *
 * @example
 * shouldAlert({ alertOn: ['newlyFailing'] }, { changes: { newlyFailing: 0, ... } }) // false
 */
export function shouldAlert(job: Pick<JobMeta, 'alertOn'>, manifest: Pick<Manifest, 'changes'>): boolean {
  if (!job.alertOn?.length) return true;
  return job.alertOn.some((name) => (manifest.changes?.[name] ?? 0) > 0);
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
  let manifest = await readManifest(store, job.jobId);
  if (!manifest) {
    const progress = await ledger.progress(job.jobId);
    if (progress.chunksDone < job.chunks) return null;
    manifest = buildManifest(job, progress, await store.exists(layout.cancel(job.jobId)));
    const alert = shouldAlert(job, manifest);
    // The outbox entry comes before the manifest: a restart that finds a manifest finds the entry.
    if (job.options.callbackUrl && alert) await writeCallbackOutbox(store, job.jobId);
    if (deps.publish && alert) await deps.publish(statusFromManifest(job, manifest));
    const wrote = await store.put(layout.manifest(job.jobId), JSON.stringify(manifest, null, 2), {
      ifAbsent: true,
      contentType: 'application/json',
    });
    if (wrote) created = manifest;
  }
  // Idempotent, so a redelivery repairs a run entry its finisher died before writing.
  if (job.schedule) await recordRunFinished(store, job, manifest);
  if (job.options.callbackUrl && deps.queue && shouldAlert(job, manifest)) await deps.queue.send([callbackMessage(job.jobId)]);
  if (created) {
    ledger.forget?.(job.jobId);
    await deps.onJobFinished?.(created);
  }
  return created;
}
