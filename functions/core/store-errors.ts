/**
 * Store failures that say "no room", not "bad chunk": a full disk (or quota) on the local folder.
 * They pass when space returns, so a chunk that meets one is retried later, never failed: fetched
 * records must not become `chunk_failed` because a disk was full for a while.
 */

const FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);

/**
 * @example
 * isStoreFull(Object.assign(new Error('no space left'), { code: 'ENOSPC' })) // true
 */
export function isStoreFull(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (FULL_CODES.has((e as { code?: string }).code ?? '')) return true;
  }
  return false;
}
