/**
 * The API's bearer token on AWS: FANOUT_TOKEN when set, else the Secrets Manager secret named by
 * FANOUT_TOKEN_SECRET_ARN, cached for a few minutes so a rotation is picked up without a cold start.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { TOKEN_RETRY_AFTER_S, type TokenSource } from '../api/auth.ts';
import { SecretUnavailableError } from '../core/errors.ts';
import type { AwsEnv } from './environment.ts';

export const TOKEN_CACHE_MS = 5 * 60 * 1000;

/** A Secrets Manager read gives up after this: a hanging read must not hold records or an API call. */
export const SECRET_READ_TIMEOUT_MS = 5_000;

/** The Secrets Manager client of every secret read here (the token, header values, proxy and callback secrets). */
export function secretsManagerClient(): SecretsManagerClient {
  return new SecretsManagerClient({
    requestHandler: { connectionTimeout: SECRET_READ_TIMEOUT_MS, requestTimeout: SECRET_READ_TIMEOUT_MS, throwOnRequestTimeout: true },
  });
}

/** Secrets Manager's errors that pass (throttling, its own faults): worth another try soon. */
const TRANSIENT_SECRET_ERRORS = new Set(['ThrottlingException', 'RequestLimitExceeded', 'InternalServiceError', 'ServiceUnavailable', 'TimeoutError']);

/**
 * One GetSecretValue, all attempts together bounded by SECRET_READ_TIMEOUT_MS: the handler's
 * requestTimeout ends at the response headers and each of the SDK's attempts gets its own.
 *
 * @throws {SecretUnavailableError} on a timeout, throttling or a fault of Secrets Manager (try again
 *   soon); other errors (no access, no such secret) as the SDK gives them.
 */
export async function readSecret(client: Pick<SecretsManagerClient, 'send'>, arn: string): Promise<string | undefined> {
  const signal = AbortSignal.timeout(SECRET_READ_TIMEOUT_MS);
  try {
    return (await client.send(new GetSecretValueCommand({ SecretId: arn }), { abortSignal: signal })).SecretString;
  } catch (error) {
    if (signal.aborted) throw new SecretUnavailableError(`Secrets Manager did not answer within ${SECRET_READ_TIMEOUT_MS} ms (timeout)`, { cause: error });
    const name = (error as Error)?.name ?? '';
    if (TRANSIENT_SECRET_ERRORS.has(name)) throw new SecretUnavailableError(`Secrets Manager: ${name}`, { cause: error });
    throw error;
  }
}

/**
 * A token source for the API. With neither variable set it throws: the deployed API never runs open.
 */
export function awsTokenSource(env: AwsEnv, client: SecretsManagerClient = secretsManagerClient()): TokenSource {
  if (env.FANOUT_TOKEN) return () => env.FANOUT_TOKEN;
  const arn = env.FANOUT_TOKEN_SECRET_ARN;
  if (!arn) throw new Error('set FANOUT_TOKEN_SECRET_ARN (or FANOUT_TOKEN): the API must not run without a token');
  let cached: { value: string; until: number } | undefined;
  // Requests share one read, and a failure is answered for TOKEN_RETRY_AFTER_S (the 503's
  // Retry-After) without another: in an outage, not every request waits up to 5 s on its own read.
  let reading: Promise<string> | undefined;
  let failed: { error: unknown; until: number } | undefined;
  const read = async (): Promise<string> => {
    try {
      const value = (await readSecret(client, arn))?.trim();
      if (!value) throw new Error('the token secret is empty');
      cached = { value, until: Date.now() + TOKEN_CACHE_MS };
      failed = undefined;
      return value;
    } catch (error) {
      failed = { error, until: Date.now() + TOKEN_RETRY_AFTER_S * 1000 };
      throw error;
    }
  };
  return async () => {
    if (cached && cached.until > Date.now()) return cached.value;
    if (failed && failed.until > Date.now()) throw failed.error;
    reading ??= read().finally(() => (reading = undefined));
    return reading;
  };
}
