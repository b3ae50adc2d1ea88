/**
 * A kept body, gathered into one buffer as it arrives. Keeping the chunks and joining them at the
 * end held every body twice at its end (the chunks and their join); here each chunk is copied once
 * into a buffer sized from Content-Length when the body is not encoded, else grown by doubling up
 * to the size limit.
 */

/** Body buffer defaults, stated once. */
export const BODY_BUFFER_DEFAULTS = {
  /** First allocation when the size is not announced. */
  initialBytes: 64 * 1024,
} as const;

export class BodyBuffer {
  private buffer: Buffer | undefined;
  private length = 0;

  /** @param max bytes the body may reach (the exchange's cut). */
  constructor(private readonly max: number) {}

  /**
   * The size the body announced (Content-Length of an unencoded body): allocated at once, capped at `max`.
   *
   * @example
   * const body = new BodyBuffer(1 << 20); body.expect(5); body.push(Buffer.from('hello')); body.take(); // <Buffer 68 65 6c 6c 6f>
   */
  expect(bytes: number): void {
    if (this.buffer || !Number.isSafeInteger(bytes) || bytes <= 0) return;
    this.buffer = Buffer.allocUnsafe(Math.min(bytes, this.max));
  }

  push(chunk: Buffer): void {
    const needed = this.length + chunk.length;
    if (!this.buffer || needed > this.buffer.length) {
      const size = Math.min(Math.max(needed, (this.buffer?.length ?? BODY_BUFFER_DEFAULTS.initialBytes / 2) * 2), Math.max(this.max, needed));
      const grown = Buffer.allocUnsafe(size);
      this.buffer?.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    chunk.copy(this.buffer, this.length);
    this.length = needed;
  }

  /** The body, and the buffer let go of. */
  take(): Buffer {
    const { buffer, length } = this;
    // Far less came than was announced or allocated (a HEAD, a lie, a cut): keep only what came.
    const body = !buffer ? Buffer.alloc(0) : length < buffer.length / 2 ? Buffer.from(buffer.subarray(0, length)) : buffer.subarray(0, length);
    this.buffer = undefined;
    this.length = 0;
    return body;
  }
}
