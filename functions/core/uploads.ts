/**
 * The life of an upload slot, so that uploads cannot fill the disk: a slot plans at most one job;
 * its list is deleted once that job is planned or the list is refused; slots never sent and lists
 * never submitted expire; and the embedded runtime bounds how many slots may wait at once.
 * (On AWS a bucket lifecycle rule also expires `uploads/` after 7 days.)
 */
import { FanoutError, NotFoundError, TooManyUploadsError, UploadUsedError } from './errors.ts';
import { layout } from './layout.ts';
import type { ObjectStore, Queue } from './ports.ts';
import { submitStoredListWithinBudget } from './plan-budget.ts';
import { submitStoredList, type ListSubmission, type Submitted } from './plan-slices.ts';

export const UPLOAD_DEFAULTS = {
  /** A slot, and the list sent to it, is deleted this long after the slot was made (24 h). */
  expireAfterMs: 24 * 60 * 60 * 1000,
  /** Slots not yet submitted that may exist at once in the embedded runtime; beyond: 429. */
  maxPending: 100,
  /** How often `fanout serve` deletes expired slots (also once at start). */
  sweepEveryMs: 60 * 60 * 1000,
};

interface SlotRecord {
  uploadId: string;
  createdAt: string;
}

interface ClaimRecord {
  claimedAt: string;
  /** The job the upload planned (or started planning), once known. */
  jobId?: string;
  /** Why the list was refused; the slot cannot be used again. */
  refused?: string;
}

/** When a slot made at `createdAt` expires. */
export function uploadExpiresAt(createdAt: Date, expireAfterMs = UPLOAD_DEFAULTS.expireAfterMs): Date {
  return new Date(createdAt.getTime() + expireAfterMs);
}

async function readJson<T>(store: ObjectStore, key: string): Promise<T | null> {
  const data = await store.get(key);
  if (!data) return null;
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch {
    return null;
  }
}

/**
 * Makes an upload slot, refusing when `maxPending` slots already wait.
 *
 * @throws {TooManyUploadsError} past `maxPending`.
 * @example await createUploadSlot(store, uuidv7(), { maxPending: 100 });
 */
export async function createUploadSlot(store: ObjectStore, uploadId: string, { maxPending, now = new Date() }: { maxPending?: number; now?: Date } = {}): Promise<Date> {
  if (maxPending !== undefined && (await countPendingUploads(store, now)) >= maxPending) {
    throw new TooManyUploadsError(
      `${maxPending} uploads are already waiting to be sent or submitted: submit or let them expire (after ${UPLOAD_DEFAULTS.expireAfterMs / 3_600_000} h) first`,
    );
  }
  const record: SlotRecord = { uploadId, createdAt: now.toISOString() };
  await store.put(layout.upload(uploadId), JSON.stringify(record), { ifAbsent: true, contentType: 'application/json' });
  return uploadExpiresAt(now);
}

/**
 * Checks that a slot may still receive or submit its list.
 *
 * @throws {NotFoundError} when there is no such slot; {UploadUsedError} when it was submitted or has expired.
 */
export async function checkUploadOpen(store: ObjectStore, uploadId: string, now = new Date()): Promise<void> {
  const slot = await readJson<SlotRecord>(store, layout.upload(uploadId));
  if (!slot) throw new NotFoundError(`no upload ${uploadId}: make one with POST /uploads`);
  const claim = await readJson<ClaimRecord>(store, layout.uploadClaim(uploadId));
  if (claim || (await store.exists(layout.uploadClaim(uploadId)))) {
    const what = claim?.refused ? `its list was refused (${claim.refused})` : claim?.jobId ? `it planned job ${claim.jobId}` : 'it is being planned';
    throw new UploadUsedError(`upload ${uploadId} was already submitted: ${what}; make a new upload with POST /uploads`);
  }
  if (uploadExpiresAt(new Date(slot.createdAt)) <= now) throw new UploadUsedError(`upload ${uploadId} expired at ${uploadExpiresAt(new Date(slot.createdAt)).toISOString()}; make a new one`);
}

/**
 * Plans the job an upload describes. The upload plans this one job only; its list is deleted once
 * the job is planned (by the workers, for a list planned in slices) or once the list is refused.
 *
 * @throws {UploadUsedError} when the upload was submitted before; InputError/OptionsError when refused.
 * @example await submitUpload(store, queue, uploadId, { format: 'auto', options: {}, source: `upload:${uploadId}` });
 */
export async function submitUpload(
  store: ObjectStore,
  queue: Queue,
  uploadId: string,
  submission: Omit<ListSubmission, 'list' | 'consume'>,
  /** With a time budget (AWS): plan until then, hand the rest to the workers. */
  deadline?: number,
): Promise<Submitted> {
  await checkUploadOpen(store, uploadId);
  const claim: ClaimRecord = { claimedAt: new Date().toISOString() };
  if (!(await store.put(layout.uploadClaim(uploadId), JSON.stringify(claim), { ifAbsent: true, contentType: 'application/json' }))) {
    throw new UploadUsedError(`upload ${uploadId} was already submitted; make a new upload with POST /uploads`);
  }
  const list = layout.uploadList(uploadId);
  let submitted: Submitted;
  try {
    const stored = { ...submission, list, consume: true };
    submitted = await (deadline === undefined ? submitStoredList(store, queue, stored) : submitStoredListWithinBudget(store, queue, { ...stored, deadline }));
  } catch (error) {
    if (error instanceof FanoutError && error.status < 500) {
      // The list cannot be fixed in place: it goes, and the user uploads again.
      await store.delete(list);
      await store.put(layout.uploadClaim(uploadId), JSON.stringify({ ...claim, refused: error.message.slice(0, 300) }), { contentType: 'application/json' });
    } else {
      await store.delete(layout.uploadClaim(uploadId)); // a failure of ours: the upload may be submitted again
    }
    throw error;
  }
  // Planned in slices: the workers still read the list and delete it once planned.
  if (submitted.state !== 'planning') await store.delete(list);
  await store.put(layout.uploadClaim(uploadId), JSON.stringify({ ...claim, jobId: submitted.jobId }), { contentType: 'application/json' });
  return submitted;
}

/** Upload ids in the store. */
async function uploadIds(store: ObjectStore): Promise<string[]> {
  return (await store.listPrefixes('uploads/')).map((prefix) => prefix.slice('uploads/'.length).replace(/\/$/, ''));
}

/** Slots made and not yet submitted (and not expired). */
export async function countPendingUploads(store: ObjectStore, now = new Date()): Promise<number> {
  let pending = 0;
  for (const id of await uploadIds(store)) {
    try {
      if (await store.exists(layout.uploadClaim(id))) continue;
      const slot = await readJson<SlotRecord>(store, layout.upload(id));
      if (slot && uploadExpiresAt(new Date(slot.createdAt)) > now) pending++;
    } catch {
      // a malformed id in the folder is not ours to count
    }
  }
  return pending;
}

/**
 * Deletes every upload slot older than `expireAfterMs` (with its list, whether sent, submitted or not).
 *
 * @returns how many slots were deleted.
 * @example setInterval(() => sweepUploads(store), UPLOAD_DEFAULTS.sweepEveryMs);
 */
export async function sweepUploads(store: ObjectStore, { now = new Date(), expireAfterMs = UPLOAD_DEFAULTS.expireAfterMs } = {}): Promise<number> {
  let deleted = 0;
  for (const id of await uploadIds(store)) {
    let prefix: string;
    try {
      prefix = layout.uploadPrefix(id);
    } catch {
      continue;
    }
    const slot = await readJson<SlotRecord>(store, layout.upload(id));
    const createdAt = slot ? new Date(slot.createdAt) : null;
    // A folder without a readable slot record is the remains of a slot: it goes too.
    if (createdAt && !Number.isNaN(createdAt.getTime()) && uploadExpiresAt(createdAt, expireAfterMs) > now) continue;
    await store.deletePrefix(prefix);
    deleted++;
  }
  return deleted;
}
