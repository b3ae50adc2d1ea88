/**
 * Writing a chunk's result file: records streamed through gzip into the store, created only if
 * absent. A delivery that may run out of time (a Lambda) also tees its records into a part file,
 * so that if it stops early what it fetched is kept; the delivery that finishes the chunk then
 * writes the result file as the earlier parts' bytes followed by its own (gzip members concatenate).
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { addCounts, countRecord, emptyCounts, type Counts } from './counts.ts';
import { gzipOptions, readNdjsonGz } from './ndjson.ts';
import type { ObjectStore } from './ports.ts';
import { isStringLimitError, tooLargeRecord, type FetchRecord } from './record.ts';

/**
 * Bytes of serialized records handed to gzip at once: records are encoded straight into a buffer
 * of this size (no joined string, no conversion by zlib), one zlib call per batch.
 */
const WRITE_BATCH_BYTES = 64 * 1024;
/** A line that may take more than this (3 UTF-8 bytes per character at most) goes to gzip alone. */
const WRITE_BATCH_CHARS = WRITE_BATCH_BYTES / 3;
/** A body at least this long is written in slices of this many characters. */
const BODY_SLICE_CHARS = 1024 * 1024;
/** Stands for the body in the record's JSON; nothing else in a record can hold it (random per process). */
const BODY_MARK = `\u0000fanout-body-${randomUUID()}\u0000`;

/**
 * A record with a large body as pieces of its NDJSON line: the JSON around the body, then the body in
 * slices (JSON-escaped one slice at a time). The whole line never exists as one string, nor as one
 * Buffer: only the body the record already holds, and one slice at a time.
 *
 * @example
 * [...recordPieces(makeRecord(r, { body: 'x'.repeat(3 << 20), bodyEncoding: 'utf8' }))].join('') === serializeRecord(record) // true
 */
export function* recordPieces(record: FetchRecord): Generator<string> {
  const body = record.body!;
  const marked = JSON.stringify({ ...record, body: BODY_MARK });
  const at = marked.indexOf(JSON.stringify(BODY_MARK));
  yield marked.slice(0, at) + '"';
  // base64 needs no escaping; text is escaped per slice, never splitting a surrogate pair.
  const escape = record.bodyEncoding !== 'base64';
  for (let from = 0; from < body.length; ) {
    let to = Math.min(from + BODY_SLICE_CHARS, body.length);
    const last = body.charCodeAt(to - 1);
    if (to < body.length && last >= 0xd800 && last <= 0xdbff) to--;
    const slice = body.slice(from, to);
    yield escape ? JSON.stringify(slice).slice(1, -1) : slice;
    from = to;
  }
  yield '"' + marked.slice(at + JSON.stringify(BODY_MARK).length) + '\n';
}

/**
 * Serialises a record without its newline; one that cannot be (past V8's string limit) is replaced
 * by its `too_large` failure record, so that URL fails alone.
 */
export function serializeOrReplace(record: FetchRecord): { record: FetchRecord; json: string } {
  try {
    return { record, json: JSON.stringify(record) };
  } catch (error) {
    if (!isStringLimitError(error)) throw error;
    const replaced = tooLargeRecord(record, `the record (a ${record.bytes}-byte body) is larger than a string can hold: ${(error as Error).message}`);
    return { record: replaced, json: JSON.stringify(replaced) };
  }
}

/** Thrown into the result file's stream when a delivery stops early: that file must not be created. */
export class StoppedEarly extends Error {
  override name = 'StoppedEarly';
}

export interface ChunkFileTargets {
  resultsKey: string;
  /** Part files holding the records before this delivery's, in order. */
  prefixParts?: string[];
  /** Keep this delivery's records here too. */
  partKey?: string;
  /** Counts of the prefix parts' records, when known (else the file is read back to count). */
  prefixCounts?: Counts | null;
}

export interface ChunkFileOutcome {
  /** Counts of the result file, when it exists now. */
  counts: Counts | null;
  /** This call created the result file. */
  created: boolean;
  /** Records this call produced (whether or not they reached the result file). */
  written: number;
  /** Counts of those records. */
  own: Counts;
  /** The part file was written (only with `partKey`). */
  partWritten: boolean;
}

/** Counts of an existing result file: what a chunk's summary must say when another delivery won. */
export async function countResults(store: Pick<ObjectStore, 'getStream'>, key: string): Promise<Counts> {
  const counts = emptyCounts();
  const stream = await store.getStream(key);
  if (!stream) throw new Error(`result file ${key} vanished`);
  for await (const record of readNdjsonGz<FetchRecord>(stream)) countRecord(counts, record);
  return counts;
}

async function* concatenated(store: ChunkFileStore, parts: string[], tail: Readable): AsyncGenerator<Uint8Array> {
  for (const key of parts) {
    const stream = await store.getStream(key);
    if (!stream) throw new Error(`part file ${key} vanished`);
    yield* stream as AsyncIterable<Uint8Array>;
  }
  yield* tail as AsyncIterable<Uint8Array>;
}

/** What writing a chunk file needs of a store: puts, and reading the parts it is made from. */
export type ChunkFileStore = Pick<ObjectStore, 'put' | 'getStream'>;

/**
 * Streams `records` (in index order, in batches) into the chunk's result file.
 *
 * @param complete called after the last record: false means the records stopped early, so the
 *   result file is abandoned and only the part file (if any) keeps them.
 */
export async function writeChunkFile(
  store: ChunkFileStore,
  targets: ChunkFileTargets,
  records: AsyncIterable<readonly FetchRecord[]>,
  complete: () => boolean = () => true,
): Promise<ChunkFileOutcome> {
  const prefixParts = targets.prefixParts ?? [];
  const counts = emptyCounts();
  const gzip = createGzip(gzipOptions);
  gzip.on('error', () => {}); // surfaced through the puts or the write loop below
  const toResults = new PassThrough();
  const toPart = targets.partKey ? new PassThrough() : undefined;
  // Errors on these surface through the puts that read them.
  toResults.on('error', () => {});
  toPart?.on('error', () => {});
  gzip.pipe(toResults);
  if (toPart) gzip.pipe(toPart);

  const body = prefixParts.length > 0 ? concatenated(store, prefixParts, toResults) : toResults;
  const resultsPut = store.put(targets.resultsKey, body, { ifAbsent: true, contentType: 'application/x-ndjson' });
  const partPut = toPart && targets.partKey ? store.put(targets.partKey, toPart, { ifAbsent: true, contentType: 'application/x-ndjson' }) : undefined;

  // If a store gives up (even before reading a byte), stop producing at once instead of waiting
  // for a 'drain' that will never come.
  let failure: unknown;
  const failed = new Promise<never>((_, reject) => {
    const fail = (error: unknown) => {
      if (error instanceof StoppedEarly) return;
      failure = error;
      gzip.destroy();
      reject(error);
    };
    resultsPut.catch(fail);
    partPut?.catch(fail);
  });
  failed.catch(() => {});

  let written = 0;
  // Records go to gzip in batches: one zlib call per ~64 KiB instead of one per record.
  let batch = Buffer.allocUnsafeSlow(WRITE_BATCH_BYTES);
  let used = 0;
  const send = async (data: Buffer | string) => {
    if (!gzip.write(data)) await Promise.race([once(gzip, 'drain'), failed]);
  };
  const flush = async () => {
    if (used === 0) return;
    const full = batch.subarray(0, used);
    // zlib keeps the buffer until it has read it: the next batch is a new one.
    batch = Buffer.allocUnsafeSlow(WRITE_BATCH_BYTES);
    used = 0;
    await send(full);
  };
  try {
    for await (const group of records) {
      for (const produced of group) {
        if (failure) throw failure;
        if ((produced.body?.length ?? 0) >= BODY_SLICE_CHARS) {
          // A large body goes to gzip a slice at a time, never copied whole into the line.
          countRecord(counts, produced);
          written++;
          await flush();
          for (const piece of recordPieces(produced)) await send(piece);
          continue;
        }
        const { record, json } = serializeOrReplace(produced);
        countRecord(counts, record);
        written++;
        if (json.length >= WRITE_BATCH_CHARS) {
          // A large line goes to gzip alone.
          await flush();
          await send(json);
          await send('\n');
          continue;
        }
        if (used + json.length * 3 + 1 > WRITE_BATCH_BYTES) await flush();
        used += batch.write(json, used);
        batch[used++] = 0x0a;
      }
    }
    await flush();
    if (failure) throw failure;
    const finished = complete();
    if (!finished) toResults.destroy(new StoppedEarly('the delivery stopped before the end of the chunk'));
    gzip.end();
    const partWritten = partPut ? await partPut : false;
    if (!finished) {
      await resultsPut.catch((error) => {
        if (!(error instanceof StoppedEarly) && !(error instanceof Error && error.message.includes('StoppedEarly'))) throw error;
      });
      return { counts: null, created: false, written, own: counts, partWritten };
    }
    const created = await resultsPut;
    const known = prefixParts.length === 0 ? emptyCounts() : targets.prefixCounts;
    const fileCounts = created && known ? addCounts(structuredClone(known), counts) : await countResults(store, targets.resultsKey);
    return { counts: fileCounts, created, written, own: counts, partWritten };
  } catch (error) {
    gzip.destroy(error as Error);
    toResults.destroy(error as Error);
    toPart?.destroy(error as Error);
    await Promise.allSettled([resultsPut, partPut]);
    throw error;
  }
}
