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
    if ((await source()) === undefined) return next();
    return check(c, next);
  };
}
