/**
 * Reads a response body: decodes gzip, deflate and br on the fly and applies the size cut to the
 * decoded bytes, so a decompression bomb stops at `limit` instead of inflating. zlib streams keep
 * backpressure, so no more than a buffer or two of decoded output exists at once.
 */
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';

export interface BodyResult {
  /** Decoded bytes received, up to the cut. */
  bytes: number;
  /** More bytes were on their way when the body was cut at `limit`. */
  truncated: boolean;
  /** The decoded bytes when asked to keep them. */
  data: Buffer | null;
  /** False when the Content-Encoding was not one we decode: `data` holds the raw bytes. */
  decoded: boolean;
}

const DECODERS: Record<string, () => Transform> = {
  gzip: () => createGunzip(),
  'x-gzip': () => createGunzip(),
  br: () => createBrotliDecompress(),
};

/** Content-Encoding tokens in the order they must be undone, or undefined if one is unknown. */
function decodingSteps(contentEncoding: string | undefined): string[] | undefined {
  if (!contentEncoding) return [];
  const tokens = contentEncoding
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && t !== 'identity');
  if (tokens.some((t) => t !== 'deflate' && !(t in DECODERS))) return undefined;
  return tokens.reverse();
}

/**
 * "deflate" is meant to be zlib-wrapped, but servers send raw deflate too: the first two bytes tell.
 * Peeks the first chunk, then replays it into the right inflater.
 */
async function* inflateAuto(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const head: Buffer = first.value;
  const zlibWrapped = head.length >= 2 && (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0;
  const inflater = zlibWrapped ? createInflate() : createInflateRaw();
  async function* replay() {
    yield head;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  pipeline(Readable.from(replay()), inflater).catch((error) => inflater.destroy(error));
  yield* inflater;
}

const CUT = Symbol('cut');

/**
 * Reads `stream` to the end or to `limit` decoded bytes, whichever comes first; at the cut the
 * stream is destroyed (closing the connection) and `truncated` is set.
 */
export async function readBody(
  stream: Readable,
  { contentEncoding, limit, keep }: { contentEncoding: string | undefined; limit: number; keep: boolean },
): Promise<BodyResult> {
  const steps = decodingSteps(contentEncoding);
  const decoded = steps !== undefined;
  const chunks: Buffer[] = [];
  let bytes = 0;
  let truncated = false;

  async function sink(source: AsyncIterable<Buffer>): Promise<void> {
    for await (const chunk of source) {
      const room = limit - bytes;
      if (chunk.length > room) {
        if (keep && room > 0) chunks.push(chunk.subarray(0, room));
        bytes = limit;
        truncated = true;
        throw CUT;
      }
      if (keep) chunks.push(chunk);
      bytes += chunk.length;
    }
  }

  try {
    const stages = (steps ?? []).map((step) => (step === 'deflate' ? inflateAuto : DECODERS[step]!()));
    await pipeline([stream, ...stages, sink] as never);
  } catch (error) {
    // Once cut, the decoders' own abort errors as the pipeline is torn down are expected.
    if (!truncated) throw error;
    stream.destroy();
  }
  return { bytes, truncated, data: keep ? Buffer.concat(chunks) : null, decoded };
}
