/**
 * One HTTP exchange on undici's dispatch API: a handler gets the status, headers and body chunks
 * as callbacks, so no Readable, pipeline or AbortSignal is made per request (the hot path of a
 * fetcher that makes tens of thousands of requests a second). Bodies are decoded (gzip, deflate,
 * br) as they arrive, through zlib with backpressure, cut at `limit` decoded bytes and hashed
 * (SHA-256) as they stream. An abort (deadline, cancel) settles the exchange at once, whatever the
 * decoders are doing, and destroys them.
 */
import { isUtf8 } from 'node:buffer';
import * as crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import type { Dispatcher } from 'undici';
import { ResponseProtocolError } from '../errors.ts';
import type { ResponseHeaders } from '../record.ts';
import { BodyBuffer } from './body-buffer.ts';

/** Exchange limits, stated once. */
export const EXCHANGE_DEFAULTS = {
  /**
   * Content-Encoding layers decoded at most (`gzip, br` is two): 5, as curl (MAX_ENCODE_STACK, since
   * CVE-2022-32206) and undici's fetch. A response with more is a `protocol` error: thousands of
   * stacked layers are an attack on the decoder, never a real site.
   */
  maxDecodingLayers: 5,
} as const;

export interface ExchangeRequest {
  origin: string;
  path: string;
  method: string;
  headers: Record<string, string>;
  body: string | null;
}

export interface ExchangeResult {
  status: number;
  headers: ResponseHeaders;
  /**
   * The Location header as a URL reference: its raw bytes (undici hands them over as a latin1
   * string) with every byte >= 0x80 percent-encoded, as curl does, so a UTF-8 `/ümlaut` stays UTF-8.
   */
  location: string | undefined;
  /** Decoded bytes received, up to the cut. */
  bytes: number;
  truncated: boolean;
  /** The bytes kept (with `keep`), decoded unless `decoded` is false. */
  data: Buffer | null;
  /** False when the Content-Encoding is not one fanout decodes: the bytes are as sent. */
  decoded: boolean;
  /** Hex SHA-256 of the decoded bytes received (up to the cut); null when no body bytes came or the body was discarded. */
  sha256: string | null;
}

export interface BodyPolicy {
  /** Cut point, in decoded bytes. */
  limit: number;
  /** Keep the bytes (else only count and hash them). */
  keep: boolean;
  /** Decides, from the status and headers, to discard the body unread (redirects, retried statuses). */
  discard?: (status: number, headers: ResponseHeaders) => boolean;
  /** Called once when undici gives the request a connection slot (it leaves the pool's queue): a deadline starts then. */
  start?(): void;
}


/** SHA-256 of one buffer in one call (Node >= 20.12), else through a Hash object. */
const sha256Of: (data: Buffer) => string =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'hex')
    : (data) => crypto.createHash('sha256').update(data).digest('hex');

/** Raised into the exchange when its body reached the cut: the connection is closed, the result stands. */
const CUT = new Error('body cut at the size limit');

const NON_ASCII = /[\x80-\xff]/;
const HIGH_BYTE = /[\x80-\xff]/g;
const percentByte = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`;

/** A header value as text: the raw bytes read as UTF-8 when they are valid UTF-8, else left as latin1. */
function headerText(value: string): string {
  if (!NON_ASCII.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : value;
}

/** Content-Encoding tokens in the order they must be undone, or undefined if one is unknown. */
function decodingSteps(contentEncoding: string | string[] | undefined): string[] | undefined {
  if (!contentEncoding) return [];
  const tokens = String(contentEncoding)
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
  /** Milliseconds from dispatch until undici gave the request a connection slot (0 until then). */
  readonly queuedMs: number;
}

class ExchangeHandler implements Dispatcher.DispatchHandler, Exchange {
  result!: Promise<ExchangeResult>;
  private controller: Dispatcher.DispatchController | undefined;
  private pendingAbort: Error | undefined;
  private status = 0;
  private headers: ResponseHeaders = {};
  private location: string | undefined;
  /** Body bytes as they came off the wire (before decoding), for "closed after N bytes". */
  private wireBytes = 0;
  private bytes = 0;
  private truncated = false;
  private kept: BodyBuffer;
  /** Most bodies come in one chunk: hashed in one call at the end; a Hash is made on the second chunk. */
  private firstChunk: Buffer | undefined;
  private hash: crypto.Hash | undefined;
  private discarding = false;
  private steps: string[] | undefined = [];
  private decoders: Transform[] | undefined;
  private settled = false;
  readonly dispatchedAt = performance.now();
  queuedMs = 0;
  private slotted = false;

  constructor(
    private readonly policy: BodyPolicy,
    private readonly resolve: (result: ExchangeResult) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    this.kept = new BodyBuffer(policy.limit);
  }

  /** The request left the pool's queue for a connection of its own. */
  slot(): void {
    if (this.slotted) return;
    this.slotted = true;
    this.queuedMs = performance.now() - this.dispatchedAt;
    this.policy.start?.();
  }

  /** Settles the exchange now (decoders are destroyed, not awaited), then closes the request. */
  abort(reason: Error): void {
    this.destroyDecoders();
    this.fail(this.withResponse(reason));
    if (this.controller) this.controller.abort(reason);
    else this.pendingAbort = reason;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.slot();
    if (this.pendingAbort) controller.abort(this.pendingAbort);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, raw: Record<string, string | string[] | undefined>): void {
    if (statusCode >= 100 && statusCode < 200) return; // informational (103 Early Hints): the final response follows
    if (statusCode < 100) {
      return this.refuse(controller, new ResponseProtocolError(`invalid status code ${String(statusCode).padStart(3, '0')} in the response`));
    }
    this.status = statusCode;
    const headers: ResponseHeaders = {};
    for (const key in raw) {
      const value = raw[key];
      if (value === undefined) continue;
      if (key === 'set-cookie') headers[key] = Array.isArray(value) ? value.map(headerText) : [headerText(value)];
      else headers[key] = headerText(Array.isArray(value) ? value.join(', ') : value);
      if (key === 'location') {
        const rawLocation = Array.isArray(value) ? value[0]! : value;
        this.location = NON_ASCII.test(rawLocation) ? rawLocation.replace(HIGH_BYTE, percentByte) : rawLocation;
      }
    }
    this.headers = headers;
    this.discarding = this.policy.discard?.(statusCode, headers) ?? false;
    this.steps = decodingSteps(headers['content-encoding']);
    // An unencoded body of announced size is kept in one buffer of that size (no copy at the end).
    if (this.policy.keep && !this.discarding && !this.steps?.length) this.kept.expect(Number(headers['content-length']));
    if (!this.discarding && this.steps && this.steps.length > EXCHANGE_DEFAULTS.maxDecodingLayers) {
      this.refuse(
        controller,
        new ResponseProtocolError(
          `${this.steps.length} stacked content-encodings; fanout decodes at most ${EXCHANGE_DEFAULTS.maxDecodingLayers}`,
        ),
      );
    }
  }

  /** Fails the exchange for a response fanout will not read, keeping what arrived. */
  private refuse(controller: Dispatcher.DispatchController, error: Error): void {
    this.fail(this.withResponse(error));
    controller.abort(error);
  }

  /** Counts, hashes (and keeps) decoded bytes; at the cut, closes the exchange. */
  private take(chunk: Buffer): void {
    if (this.truncated || this.settled) return;
    const room = this.policy.limit - this.bytes;
    if (chunk.length > room) {
      if (room > 0) {
        const part = chunk.subarray(0, room);
        this.digest(part);
        if (this.policy.keep) this.kept.push(part);
      }
      this.bytes = this.policy.limit;
      this.truncated = true;
      this.destroyDecoders();
      this.finish();
      this.controller?.abort(CUT);
      return;
    }
    if (chunk.length === 0) return;
    this.digest(chunk);
    if (this.policy.keep) this.kept.push(chunk);
    this.bytes += chunk.length;
  }

  private digest(chunk: Buffer): void {
    if (this.hash) this.hash.update(chunk);
    else if (!this.firstChunk) this.firstChunk = chunk;
    else {
      this.hash = crypto.createHash('sha256').update(this.firstChunk).update(chunk);
      this.firstChunk = undefined;
    }
  }

  private sha256(): string | null {
    if (this.discarding) return null;
    if (this.hash) return this.hash.digest('hex');
    return this.firstChunk ? sha256Of(this.firstChunk) : null;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.wireBytes += chunk.length;
    if (this.discarding || this.truncated) return;
    if (!this.steps || this.steps.length === 0) return this.take(chunk);
    if (!this.decoders) {
      this.decoders = this.steps.map((step) => decoderFor(step, chunk));
      for (let i = 0; i < this.decoders.length - 1; i++) this.decoders[i]!.pipe(this.decoders[i + 1]!);
      const last = this.decoders.at(-1)!;
      last.on('data', (out: Buffer) => this.take(out));
      for (const d of this.decoders) {
        d.on('error', (error: Error) => {
          if (this.settled) return;
          this.destroyDecoders();
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
    this.destroyDecoders();
    this.fail(this.withResponse(error));
  }

  private destroyDecoders(): void {
    if (!this.decoders) return;
    for (const d of this.decoders) {
      d.removeAllListeners('data');
      d.destroy();
    }
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve({
      status: this.status,
      headers: this.headers,
      location: this.location,
      bytes: this.bytes,
      truncated: this.truncated,
      data: this.policy.keep && !this.discarding ? this.kept.take() : null,
      decoded: this.steps !== undefined,
      sha256: this.sha256(),
    });
  }

  /**
   * A failure after the response began says what had arrived (the record keeps status and headers)
   * and how many body bytes came off the wire, of how many announced.
   */
  private withResponse(error: Error): Error {
    if (this.status === 0) return error;
    const length = this.headers['content-length'];
    return Object.assign(error, {
      responseStatus: this.status,
      responseHeaders: this.headers,
      bodyBytes: this.wireBytes,
      expectedBytes: typeof length === 'string' && /^\d+$/.test(length) ? Number(length) : undefined,
    });
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
  handler.result = result;
  try {
    dispatcher.dispatch(new SlotWatchingOptions(request, handler), handler);
  } catch (error) {
    handler.onResponseError(undefined as never, error as Error);
  }
  return handler;
}

/**
 * The dispatch options, with one getter: undici reads `headersTimeout` when it builds its Request
 * on the connection (Client) the pool picked, not while the request waits in the pool's queue, the
 * one moment that tells when the wait for a connection slot ended. Connecting, if needed, comes
 * after (fetch time). A class, so no closure is made per request.
 */
class SlotWatchingOptions {
  readonly origin: string;
  readonly path: string;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;

  constructor(
    request: ExchangeRequest,
    private readonly handler: ExchangeHandler,
  ) {
    this.origin = request.origin;
    this.path = request.path;
    this.method = request.method as Dispatcher.HttpMethod;
    this.headers = request.headers;
    this.body = request.body ?? undefined;
  }

  get headersTimeout(): undefined {
    this.handler.slot();
    return undefined;
  }
}
