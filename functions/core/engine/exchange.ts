/**
 * One HTTP exchange on undici's dispatch API: a handler gets the status, headers and body chunks
 * as callbacks, so no Readable, pipeline or AbortSignal is made per request (the hot path of a
 * fetcher that makes tens of thousands of requests a second). Bodies are decoded (gzip, deflate,
 * br) as they arrive, through zlib with backpressure, and cut at `limit` decoded bytes.
 */
import type { Dispatcher } from 'undici';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';

export interface ExchangeRequest {
  origin: string;
  path: string;
  method: string;
  headers: Record<string, string>;
  body: string | null;
}

export interface ExchangeResult {
  status: number;
  headers: Record<string, string>;
  /** Decoded bytes received, up to the cut. */
  bytes: number;
  truncated: boolean;
  /** The bytes kept (with `keep`), decoded unless `decoded` is false. */
  data: Buffer | null;
  /** False when the Content-Encoding is not one fanout decodes: the bytes are as sent. */
  decoded: boolean;
}

export interface BodyPolicy {
  /** Cut point, in decoded bytes. */
  limit: number;
  /** Keep the bytes (else only count them). */
  keep: boolean;
  /** Decides, from the status and headers, to discard the body unread (redirects, retried statuses). */
  discard?: (status: number, headers: Record<string, string>) => boolean;
}

/** Raised into the exchange when its body reached the cut: the connection is closed, the result stands. */
const CUT = new Error('body cut at the size limit');

function flatten(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key in raw) {
    const value = raw[key];
    if (value !== undefined) out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** Content-Encoding tokens in the order they must be undone, or undefined if one is unknown. */
function decodingSteps(contentEncoding: string | undefined): string[] | undefined {
  if (!contentEncoding) return [];
  const tokens = contentEncoding
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && t !== 'identity');
  if (tokens.some((t) => t !== 'gzip' && t !== 'x-gzip' && t !== 'deflate' && t !== 'br')) return undefined;
  return tokens.reverse();
}

function decoderFor(step: string, head: Buffer): Transform {
  if (step === 'br') return createBrotliDecompress();
  if (step === 'deflate') {
    // "deflate" is meant to be zlib-wrapped, but servers send raw deflate too: the first two bytes tell.
    const wrapped = head.length >= 2 && (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0;
    return wrapped ? createInflate() : createInflateRaw();
  }
  return createGunzip();
}

/** A dispatched exchange: its result, and a way to abort it (deadline, cancel). */
export interface Exchange {
  result: Promise<ExchangeResult>;
  abort(reason: Error): void;
}

class ExchangeHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private pendingAbort: Error | undefined;
  private status = 0;
  private headers: Record<string, string> = {};
  private bytes = 0;
  private truncated = false;
  private chunks: Buffer[] = [];
  private discarding = false;
  private steps: string[] | undefined = [];
  private decoders: Transform[] | undefined;
  private settled = false;

  constructor(
    private readonly policy: BodyPolicy,
    private readonly resolve: (result: ExchangeResult) => void,
    private readonly reject: (error: unknown) => void,
  ) {}

  abort(reason: Error): void {
    if (this.controller) this.controller.abort(reason);
    else this.pendingAbort = reason;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.pendingAbort) controller.abort(this.pendingAbort);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.status = statusCode;
    this.headers = flatten(headers);
    this.discarding = this.policy.discard?.(statusCode, this.headers) ?? false;
    this.steps = decodingSteps(this.headers['content-encoding']);
  }

  /** Counts (and keeps) decoded bytes; at the cut, closes the exchange. */
  private take(chunk: Buffer): void {
    if (this.truncated) return;
    const room = this.policy.limit - this.bytes;
    if (chunk.length > room) {
      if (this.policy.keep && room > 0) this.chunks.push(chunk.subarray(0, room));
      this.bytes = this.policy.limit;
      this.truncated = true;
      for (const d of this.decoders ?? []) d.destroy();
      this.finish();
      this.controller?.abort(CUT);
      return;
    }
    if (this.policy.keep) this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding || this.truncated) return;
    if (!this.steps || this.steps.length === 0) return this.take(chunk);
    if (!this.decoders) {
      this.decoders = this.steps.map((step) => decoderFor(step, chunk));
      for (let i = 0; i < this.decoders.length - 1; i++) this.decoders[i]!.pipe(this.decoders[i + 1]!);
      const last = this.decoders.at(-1)!;
      last.on('data', (out: Buffer) => this.take(out));
      for (const d of this.decoders) {
        d.on('error', (error: Error) => {
          if (this.truncated) return;
          this.fail(this.withResponse(Object.assign(error, { code: (error as NodeJS.ErrnoException).code ?? 'Z_DATA_ERROR' })));
          controller.abort(error);
        });
      }
    }
    const first = this.decoders[0]!;
    if (!first.write(chunk)) {
      controller.pause();
      first.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.settled) return;
    if (!this.decoders || this.discarding) return this.finish();
    const last = this.decoders.at(-1)!;
    last.once('end', () => this.finish());
    this.decoders[0]!.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (error === CUT || this.truncated) return this.finish();
    for (const d of this.decoders ?? []) d.destroy();
    this.fail(this.withResponse(error));
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve({
      status: this.status,
      headers: this.headers,
      bytes: this.bytes,
      truncated: this.truncated,
      data: this.policy.keep && !this.discarding ? Buffer.concat(this.chunks) : null,
      decoded: this.steps !== undefined,
    });
  }

  /** A failure after the response began says what had arrived (the record keeps status and headers). */
  private withResponse(error: Error): Error {
    return this.status > 0 ? Object.assign(error, { responseStatus: this.status, responseHeaders: this.headers }) : error;
  }

  private fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(error);
  }
}

/**
 * Starts an exchange.
 *
 * @example
 * const ex = exchange(agent, { origin: 'https://example.com', path: '/', method: 'GET', headers: {}, body: null }, { limit: 1 << 20, keep: true });
 * const timer = setTimeout(() => ex.abort(new Error('deadline')), 15_000);
 * const result = await ex.result;
 */
export function exchange(dispatcher: Dispatcher, request: ExchangeRequest, policy: BodyPolicy): Exchange {
  let handler!: ExchangeHandler;
  const result = new Promise<ExchangeResult>((resolve, reject) => {
    handler = new ExchangeHandler(policy, resolve, reject);
  });
  try {
    dispatcher.dispatch(
      { origin: request.origin, path: request.path, method: request.method as Dispatcher.HttpMethod, headers: request.headers, body: request.body ?? undefined },
      handler,
    );
  } catch (error) {
    handler.onResponseError(undefined as never, error as Error);
  }
  return { result, abort: (reason) => handler.abort(reason) };
}
