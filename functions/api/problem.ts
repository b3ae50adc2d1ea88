/**
 * Errors as application/problem+json (RFC 9457): a title, the status, and a detail that names the
 * line or field at fault, so a script and a person can both act on it.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { FanoutError, InputError, InvalidKeyError, OptionsError, QueryError } from '../core/errors.ts';

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** 1-based input line, when the problem belongs to one. */
  line?: number;
  /** Offending field or option, when there is one. */
  field?: string;
  instance?: string;
}

/** A problem+json response. */
export function problemResponse(status: number, title: string, detail: string, extra: Partial<Problem> = {}): Response {
  const body: Problem = { type: 'about:blank', title, status, detail, ...extra };
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': PROBLEM_TYPE } });
}

/** An exception that becomes a problem response wherever it is thrown in a handler. */
export function problem(status: ContentfulStatusCode, title: string, detail: string, extra: Partial<Problem> = {}): HTTPException {
  return new HTTPException(status, { res: problemResponse(status, title, detail, extra) });
}

/** The app's error handler: every error leaves as problem+json, and no stack trace leaves at all. */
export function onError(error: Error, c: Context): Response {
  const instance = new URL(c.req.url).pathname;
  if (error instanceof HTTPException) {
    const res = error.getResponse();
    if (res.headers.get('content-type')?.startsWith(PROBLEM_TYPE)) return res;
    return problemResponse(error.status, titleOf(error.status), error.message || titleOf(error.status), { instance });
  }
  if (error instanceof FanoutError && error.status < 500) {
    const extra: Partial<Problem> = { instance };
    if (error instanceof InputError) {
      if (error.line !== undefined) extra.line = error.line;
      if (error.field !== undefined) extra.field = error.field;
    }
    if ((error instanceof OptionsError || error instanceof QueryError) && error.field !== undefined) extra.field = error.field;
    if (error instanceof InvalidKeyError) return problemResponse(400, error.title, error.message, extra);
    return problemResponse(error.status, error.title, error.message, extra);
  }
  if (storeIsFull(error)) {
    console.error(JSON.stringify({ level: 'error', message: 'store full', path: instance, error: String(error?.message ?? error) }));
    return problemResponse(507, 'Insufficient storage', 'the store has no space left: free space (or raise the quota) and try again', { instance });
  }
  console.error(JSON.stringify({ level: 'error', message: 'unhandled error', path: instance, error: String(error?.stack ?? error) }));
  return problemResponse(500, 'Internal error', 'the server could not complete the request', { instance });
}

/** ENOSPC (disk full) or EDQUOT (quota exceeded) anywhere in the error's cause chain. */
function storeIsFull(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

function titleOf(status: number): string {
  return (
    { 400: 'Bad request', 401: 'Unauthorized', 404: 'Not found', 405: 'Method not allowed', 409: 'Conflict', 413: 'Payload too large', 415: 'Unsupported media type', 507: 'Insufficient storage' }[status] ??
    'Error'
  );
}
