/**
 * Maps what went wrong in an attempt to the record's error codes, and says which ones are worth
 * another attempt.
 */
import type { ErrorCode } from '../record.ts';

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|HOSTNAME_MISMATCH|ERR_OSSL_)/;

/** Codes of errors that can pass with time: another attempt may succeed. */
export const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set(['connect', 'timeout', 'reset', 'dns']);

interface ErrorLike {
  code?: string;
  name?: string;
  message?: string;
  cause?: unknown;
}

/**
 * Error code for an exception thrown by undici, the connector, a decoder or the deadline.
 * `midBody` says the response had begun: a clean close then means a body shorter than promised.
 */
export function classifyError(error: unknown, midBody = false): { code: ErrorCode; retryable: boolean; message: string } {
  const e = (error ?? {}) as ErrorLike;
  // undici wraps the socket's error as `cause` of its own in some paths: classify the innermost one.
  const inner = e.cause && typeof e.cause === 'object' && (e.cause as ErrorLike).code ? (e.cause as ErrorLike) : e;
  const code = inner.code ?? e.code ?? '';
  const message = (inner.message || e.message || String(error)).slice(0, 500);
  const result = (c: ErrorCode, retryable = RETRYABLE_CODES.has(c)) => ({ code: c, retryable, message });

  if (code === 'FANOUT_BLOCKED') return result('blocked');
  if (code === 'ENOTFOUND' || code === 'EAI_NONAME' || code === 'EAI_NODATA') return result('dns', false);
  if (code === 'EAI_AGAIN' || code === 'EAI_FAIL') return result('dns', true);
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') {
    return result('connect');
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return result('timeout');
  }
  if (TLS_CODES.test(code) || /SSL routines|certificate|TLS/i.test(code ? '' : message)) return result('tls');
  if (midBody && code === 'UND_ERR_SOCKET') {
    return { code: 'protocol' as ErrorCode, retryable: false, message: `connection closed before the end of the body (${message})` };
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED') {
    return result('reset');
  }
  if (
    code.startsWith('HPE_') ||
    inner.name === 'HTTPParserError' ||
    code === 'UND_ERR_HEADERS_OVERFLOW' ||
    code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' ||
    code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE' ||
    code === 'UND_ERR_INFO' ||
    code.startsWith('Z_') ||
    code === 'ERR_PADDING_1' ||
    code.startsWith('ERR__') // brotli decoder errors
  ) {
    return result('protocol', false);
  }
  if (code === 'UND_ERR_INVALID_ARG' || code === 'ERR_INVALID_URL') return result('invalid_url', false);
  return result('internal', false);
}
