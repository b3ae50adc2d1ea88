/**
 * The result record: one NDJSON line per input line, whatever happened to it.
 */
import type { IndexedItem } from './input.ts';

export const ERROR_CODES = [
  'invalid_url',
  'blocked',
  'dns',
  'connect',
  'tls',
  'timeout',
  'reset',
  'protocol',
  'too_many_redirects',
  'cancelled',
  'chunk_failed',
  'internal',
  /** The record could not be kept within the limits (e.g. past V8's string length): that URL fails alone. */
  'too_large',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface RecordError {
  code: ErrorCode;
  message: string;
}

/**
 * Response headers as the record keeps them: names lower-cased, repeated fields joined with ", ",
 * except `set-cookie`, which cannot be joined (RFC 9110 5.3) and is always an array of strings.
 */
export type ResponseHeaders = Record<string, string | string[]>;

export interface FetchRecord {
  index: number;
  url: string;
  id: string | number | null;
  /** The item's own data (a CSV row's other columns), when it has any. */
  fields?: Record<string, string>;
  /** With the `dedupe` option: the index of the first record of the same URL; no request was made for this one. */
  duplicateOf?: number;
  ok: boolean;
  status: number | null;
  finalUrl: string | null;
  redirects: number;
  headers: ResponseHeaders;
  bytes: number;
  truncated: boolean;
  /** Hex SHA-256 of the decoded body (also with bodies `none`); null when no body came. */
  sha256: string | null;
  body?: string;
  bodyEncoding?: 'utf8' | 'base64';
  bodyKey?: string;
  attempts: number;
  startedAt: string;
  durationMs: number;
  /** Milliseconds the request waited for a connection slot, over all attempts; not in `durationMs`. */
  queuedMs: number;
  error: RecordError | null;
  /** With a baseline (option `since`): a 304 answered the conditional request; nothing was downloaded. */
  notModified?: true;
  /** With a baseline: `new` (not in it), `unchanged` or `changed` (sha256 or status differs). */
  change?: Change;
  /** With a baseline: the item's record there (null for a `new` item). */
  previous?: PreviousRecord | null;
}

export const CHANGES = ['new', 'unchanged', 'changed'] as const;
export type Change = (typeof CHANGES)[number];

/** What a record keeps of the baseline's record: `status` and `sha256` (contract), `ok` and `bytes`. */
export interface PreviousRecord {
  status: number | null;
  sha256: string | null;
  ok: boolean;
  bytes: number;
}

/** The comparison fields, appended by the worker when the job has a baseline. */
export type ChangeFields = Pick<FetchRecord, 'notModified' | 'change' | 'previous'>;

type BodyFields = Pick<FetchRecord, 'body' | 'bodyEncoding'> | Pick<FetchRecord, 'bodyKey'>;

/**
 * Builds a record with its fields in the contract's order, so serialising it is one JSON.stringify.
 * Every record is made here.
 */
export function makeRecord(r: Omit<FetchRecord, 'body' | 'bodyEncoding' | 'bodyKey'>, body?: BodyFields): FetchRecord {
  const record: FetchRecord = {
    index: r.index,
    url: r.url,
    id: r.id,
    ...(r.fields !== undefined ? { fields: r.fields } : {}),
    ...(r.duplicateOf !== undefined ? { duplicateOf: r.duplicateOf } : {}),
    ok: r.ok,
    status: r.status,
    finalUrl: r.finalUrl,
    redirects: r.redirects,
    headers: r.headers,
    bytes: r.bytes,
    truncated: r.truncated,
    sha256: r.sha256,
    ...body,
    attempts: r.attempts,
    startedAt: r.startedAt,
    durationMs: r.durationMs,
    queuedMs: r.queuedMs,
    error: r.error,
  };
  if (r.notModified) record.notModified = true;
  if (r.change !== undefined) {
    record.change = r.change;
    record.previous = r.previous ?? null;
  }
  return record;
}

/** The record of an item no request was made for: nothing arrived, so every response field is empty. */
function unfetchedRecord(
  item: IndexedItem,
  outcome: Pick<FetchRecord, 'error' | 'attempts'> & { duplicateOf?: number },
  startedAt: Date,
): FetchRecord {
  return makeRecord({
    index: item.index,
    url: item.url,
    id: item.id ?? null,
    fields: item.fields,
    duplicateOf: outcome.duplicateOf,
    ok: false,
    status: null,
    finalUrl: null,
    redirects: 0,
    headers: {},
    bytes: 0,
    truncated: false,
    sha256: null,
    attempts: outcome.attempts,
    startedAt: startedAt.toISOString(),
    durationMs: 0,
    queuedMs: 0,
    error: outcome.error,
  });
}

/**
 * A record for an item that was never fetched (cancelled, or its chunk failed for good).
 *
 * @example
 * failedRecord(item, 'cancelled', 'the job was cancelled before this URL was fetched')
 */
export function failedRecord(item: IndexedItem, code: ErrorCode, message: string, attempts = 0, startedAt = new Date()): FetchRecord {
  return unfetchedRecord(item, { error: { code, message }, attempts }, startedAt);
}

/**
 * The record of a duplicate (the `dedupe` option): no request is made; it points at the first
 * record of its URL. `ok` is false and `status` null (nothing was fetched for this line) and
 * `error` null (nothing went wrong): read the outcome from the record at `duplicateOf`.
 *
 * @example
 * duplicateRecord({ index: 7, url: 'http://a.test/', duplicateOf: 2 }).duplicateOf // 2
 */
export function duplicateRecord(item: IndexedItem & { duplicateOf: number }, startedAt = new Date()): FetchRecord {
  return unfetchedRecord(item, { duplicateOf: item.duplicateOf, error: null, attempts: 0 }, startedAt);
}

/**
 * The record with the item's `fields` (a CSV row's other columns) in their place after `id`.
 *
 * @example
 * withItemFields(record, { index: 0, url, fields: { note: 'x' } }).fields // { note: 'x' }
 */
export function withItemFields(record: FetchRecord, item: IndexedItem): FetchRecord {
  if (item.fields === undefined) return record;
  const { body, bodyEncoding, bodyKey, ...rest } = record;
  const bodyFields = bodyKey !== undefined ? { bodyKey } : body !== undefined ? { body, bodyEncoding } : undefined;
  return makeRecord({ ...rest, fields: item.fields }, bodyFields);
}

/**
 * The same record without its body, failed with `too_large`: what is stored for a record that cannot
 * be serialised (a body past V8's string limit), so only that URL fails, never its chunk.
 *
 * @example
 * tooLargeRecord(record, 'the record is larger than a string can hold')
 */
export function tooLargeRecord(record: FetchRecord, message: string): FetchRecord {
  return makeRecord({ ...record, ok: false, error: { code: 'too_large', message: message.slice(0, 500) } });
}

/** True for the error V8 throws when a string (a body, a serialised record) would pass its limit. */
export function isStringLimitError(error: unknown): boolean {
  return error instanceof RangeError && /Invalid string length|Cannot create a string longer/i.test(error.message);
}

let isoSecond = NaN;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()`, made from the text of the current second and the milliseconds:
 * a record's `startedAt` costs no Date and no formatting in the common case (same second).
 *
 * @example
 * isoTimestamp(Date.UTC(2026, 10, 26, 11, 29, 44, 7)) // '2026-11-26T11:29:44.007Z'
 */
export function isoTimestamp(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const full = new Date(ms).toISOString();
    // Years outside 0000-9999 are written with six digits and a sign: no shortcut for those.
    if (full.length !== 24) return full;
    isoSecond = second;
    isoPrefix = full.slice(0, 20);
  }
  const milli = Math.floor(ms) - second * 1000;
  return isoPrefix + (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z';
}

/** One NDJSON line (records come from {@link makeRecord}, already in the contract's order). */
export function serializeRecord(record: FetchRecord): string {
  return JSON.stringify(record) + '\n';
}
