/**
 * Bearer-token authentication, Hono's middleware with our problem+json answers. The expected token
 * comes from a getter (an environment variable locally, Secrets Manager on AWS); when it yields
 * nothing, authentication is off, which `fanout serve` allows only on loopback.
 */
import { timingSafeEqual } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { bearerAuth } from 'hono/bearer-auth';
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

/**
 * Requires `Authorization: Bearer TOKEN` when a token is configured.
 *
 * @example
 * app.use('/jobs/*', requireToken(() => process.env.FANOUT_TOKEN));
 */
export function requireToken(source: TokenSource): MiddlewareHandler {
  const check = bearerAuth({
    verifyToken: async (given) => {
      const expected = await source();
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
      // The token's store (Secrets Manager) is unreachable: nothing is wrong with the request.
      console.error(JSON.stringify({ level: 'error', message: 'the API token could not be read', error: (error as Error).message }));
      const unavailable = problemResponse(503, 'Service Unavailable', 'the API token could not be read just now; try again shortly');
      unavailable.headers.set('retry-after', '5');
      return unavailable;
    }
    if (expected === undefined) return next();
    return check(c, next);
  };
}
