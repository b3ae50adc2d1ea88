/**
 * Maps what went wrong in an attempt to the record's error codes and a plain message, and says
 * whether the cause can pass with time (whether to retry is decided in retry.ts).
 */
import type { ErrorCode } from '../record.ts';
import { AGENT_DEFAULTS } from './agent.ts';
import { isTransientError } from './retry.ts';

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|HOSTNAME_MISMATCH|ERR_OSSL_)/;
/** Errors that mean the connection ended before the body did. */
const CLOSED_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH']);

interface ErrorLike {
  code?: string;
  name?: string;
  message?: string;
  cause?: unknown;
  /** Set by the exchange on failures after the response began. */
  bodyBytes?: number;
  expectedBytes?: number;
}

export interface Classified {
  code: ErrorCode;
  /** The cause can pass with time (see retry.ts for when that means another attempt). */
  transient: boolean;
  message: string;
}

/**
 * Error code for an exception thrown by undici, the connector, a decoder or the deadline.
 * `midBody` says the response had begun: a connection closing then cut the body short.
 *
 * @example
 * classifyError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) // { code: 'connect', transient: true, ... }
 */
export function classifyError(error: unknown, midBody = false): Classified {
  const e = (error ?? {}) as ErrorLike;
  // undici wraps the socket's error as `cause` of its own in some paths: classify the innermost one.
  const inner = e.cause && typeof e.cause === 'object' && (e.cause as ErrorLike).code ? (e.cause as ErrorLike) : e;
  const code = inner.code ?? e.code ?? '';
  const message = (inner.message || e.message || String(error)).slice(0, 500);
  const result = (c: ErrorCode, transient = isTransientError(c), text = message) => ({ code: c, transient, message: text });

  if (code === 'FANOUT_BLOCKED') return result('blocked');
  if (code === 'FANOUT_PROTOCOL') return result('protocol');
  // The proxy refused the request or the tunnel (407, a CONNECT answered with an error): not transient.
  if (code === 'FANOUT_PROXY') return result('connect', false);
  if (code === 'ENOTFOUND' || code === 'EAI_NONAME' || code === 'EAI_NODATA') return result('dns', false);
  if (code === 'EAI_AGAIN' || code === 'EAI_FAIL') return result('dns', true);
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') {
    return result('connect');
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return result('timeout');
  }
  if (TLS_CODES.test(code) || /SSL routines|certificate|TLS/i.test(code ? '' : message)) return result('tls');
  // undici refuses a response to no request, or a 100 Continue fanout did not ask for (no Expect), as "bad response".
  if (code === 'UND_ERR_SOCKET' && (message === 'bad response' || message === 'bad upgrade')) {
    return result('protocol', false, 'the server sent a response that was not asked for (an unsolicited 100 Continue or upgrade)');
  }
  if (midBody && CLOSED_CODES.has(code)) {
    const of = e.expectedBytes !== undefined ? ` of ${e.expectedBytes}` : '';
    return result('reset', true, `connection closed mid-body after ${e.bodyBytes ?? 0}${of} bytes`);
  }
  if (CLOSED_CODES.has(code)) return result('reset');
  if (code === 'UND_ERR_HEADERS_OVERFLOW') {
    return result('protocol', false, `response headers larger than ${AGENT_DEFAULTS.maxHeaderSize / 1024} KiB`);
  }
  if (
    code.startsWith('HPE_') ||
    inner.name === 'HTTPParserError' ||
    code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE' ||
    code === 'UND_ERR_INFO' ||
    code.startsWith('Z_') ||
    code === 'ERR_PADDING_1' ||
    code.startsWith('ERR__') // brotli decoder errors
  ) {
    return result('protocol', false);
  }
  // undici asserts on responses it cannot represent (a status below 100 that slipped past the exchange):
  // the response broke HTTP; its assertion text says nothing to a user.
  if (code === 'ERR_ASSERTION') return result('protocol', false, 'malformed HTTP response');
  if (code === 'UND_ERR_INVALID_ARG' || code === 'ERR_INVALID_URL') return result('invalid_url', false);
  return result('internal', false);
}
