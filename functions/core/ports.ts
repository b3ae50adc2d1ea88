/**
 * The two ports the domain talks through. The embedded runtime implements them with a folder and an
 * in-process queue (functions/local), AWS with S3 and SQS; the worker, planner and status code are
 * written once against these interfaces.
 */
import type { Readable } from 'node:stream';

export type Body = Uint8Array | string | AsyncIterable<Uint8Array>;

/** Object storage with S3's semantics: whole-object writes, keys sorted lexicographically. */
export interface ObjectStore {
  /**
   * Writes an object whole; readers never see a half-written one.
   * With `ifAbsent`, the write happens only when no object has the key (S3 `If-None-Match: *`).
   *
   * @returns false when `ifAbsent` was set and the key already existed, true otherwise.
   */
  put(key: string, body: Body, options?: { ifAbsent?: boolean; contentType?: string }): Promise<boolean>;
  /** The whole object, or null when there is none. */
  get(key: string): Promise<Buffer | null>;
  /** The object as a stream (from byte `start` on), or null when there is none. */
  getStream(key: string, options?: { start?: number }): Promise<Readable | null>;
  exists(key: string): Promise<boolean>;
  /** The object's size in bytes, or null when there is none. */
  size(key: string): Promise<number | null>;
  /** Keys under `prefix`, in lexicographic order, starting after `startAfter` when given. */
  list(prefix: string, options?: { startAfter?: string }): AsyncIterable<string>;
  /** The next level of "folders" under `prefix` (S3's CommonPrefixes with delimiter `/`), sorted. */
  listPrefixes(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
  /** Deletes every key under `prefix`. */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Makes `to` an object with the bytes of `from`, only if no object has the key `to`, without
   * reading the bytes through the caller (the local folder: a hard link). Optional: a store that
   * cannot do it cheaply leaves it out and callers copy the bytes themselves.
   *
   * @returns false when `to` already existed.
   */
  copyIfAbsent?(from: string, to: string): Promise<boolean>;
}

export interface SendOptions {
  /** Hides the messages for this long after sending (at most QUEUE_MAX_DELAY_MS). */
  delayMs?: number;
}

/** SQS's largest DelaySeconds (900 s): every queue honours delays up to this. */
export const QUEUE_MAX_DELAY_MS = 900_000;

/** A message as delivered: SQS's at-least-once semantics. */
export interface ReceivedMessage {
  id: string;
  body: string;
  /** Changes on every delivery; only the latest one can delete the message. */
  receipt: string;
  /** 1 on the first delivery. */
  receiveCount: number;
}

/** A queue with SQS's semantics: at-least-once, visibility timeouts, a max receive count, a dead-letter queue. */
export interface Queue {
  /**
   * Sends messages, batched as the backend allows; with `delayMs`, they become visible only after
   * that long (SQS DelaySeconds, at most 15 minutes).
   */
  send(bodies: string[], options?: SendOptions): Promise<void>;
  /** Up to `max` messages, waiting up to `waitMs` for the first. */
  receive(options: { max: number; waitMs?: number; signal?: AbortSignal }): Promise<ReceivedMessage[]>;
  /** Acknowledges a delivery; a stale receipt is ignored, as SQS does. */
  delete(receipt: string): Promise<void>;
  /** Hides a delivery for `ms` from now (0 makes it visible again at once). */
  changeVisibility(receipt: string, ms: number): Promise<void>;
  /** How many receives a message gets before it is dead-lettered. */
  readonly maxReceiveCount: number;
  /** The visibility timeout applied on receive. */
  readonly visibilityTimeoutMs: number;
}
