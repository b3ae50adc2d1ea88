/**
 * Bearer-token authentication, Hono's middleware with our problem+json answers. The expected token
 * comes from a getter (an environment variable locally, Secrets Manager on AWS); when it yields
 * nothing, authentication is off, which `fanout serve` allows only on loopback.
 */
import { timingSafeEqual } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { bearerAuth } from 'hono/bearer-auth';
import { SecretUnavailableError } from '../core/errors.ts';
import { problemResponse } from './problem.ts';

/** Where the token comes from: called per request, so it may cache and rotate. */
export type TokenSource = () => Promise<string | undefined> | string | undefined;

/** Constant-time comparison of two tokens of any length (compares their SHA-256 digests). */
export function tokensMatch(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

const unauthorized = (detail: string) => () => problemResponse(401, 'Unauthorized', detail);

/** Where a request keeps the token it is checked against (read once per request). */
const EXPECTED_TOKEN = 'fanoutExpectedToken';

/** Seconds a client is told to wait when the token cannot be read just now (a token source may keep the failure as long). */
export const TOKEN_RETRY_AFTER_S = 5;

/**
 * Requires `Authorization: Bearer TOKEN` when a token is configured.
 *
 * @example
 * app.use('/jobs/*', requireToken(() => process.env.FANOUT_TOKEN));
 */
export function requireToken(source: TokenSource): MiddlewareHandler {
  const check = bearerAuth({
    // The token read once for this request (below): a second read could fail where the first did not.
    verifyToken: (given, c) => {
      const expected = c.get(EXPECTED_TOKEN as never) as string | undefined;
      return expected !== undefined && tokensMatch(expected, given);
    },
    noAuthenticationHeader: { message: unauthorized('this API needs "Authorization: Bearer TOKEN"') },
    invalidAuthenticationHeader: { message: unauthorized('the Authorization header is not "Bearer TOKEN"') },
    invalidToken: { message: unauthorized('the bearer token is not valid') },
  });
  return async (c, next) => {
    let expected: string | undefined;
    try {
      expected = await source();
    } catch (error) {
      console.error(JSON.stringify({ level: 'error', message: 'the API token could not be read', error: (error as Error).message }));
      // Its store timed out or throttled: nothing is wrong with the request, try again shortly.
      if (error instanceof SecretUnavailableError) {
        const unavailable = problemResponse(503, 'Service Unavailable', 'the API token could not be read just now; try again shortly');
        unavailable.headers.set('retry-after', String(TOKEN_RETRY_AFTER_S));
        return unavailable;
      }
      // Missing, empty or not readable: no retry helps until the operator fixes it.
      return problemResponse(500, 'Internal error', "the API token is not configured correctly; the API's log says why");
    }
    if (expected === undefined) return next();
    c.set(EXPECTED_TOKEN as never, expected as never);
    return check(c, next);
  };
}
