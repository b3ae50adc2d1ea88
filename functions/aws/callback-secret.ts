/**
 * The completion callback's signing secret on AWS: FANOUT_CALLBACK_SECRET when set, else the
 * Secrets Manager secret named by FANOUT_CALLBACK_SECRET_ARN (cached like the API token, so a
 * rotation is picked up without a cold start), else the API token FANOUT_TOKEN; undefined when none
 * is configured (callbacks then go unsigned).
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { AwsEnv } from './environment.ts';
import { TOKEN_CACHE_MS, readSecret, secretsManagerClient } from './token.ts';

/**
 * @example
 * const secret = await callbackSecretSource(awsRuntime().env)();
 */
export function callbackSecretSource(
  env: AwsEnv,
  client: () => SecretsManagerClient = secretsManagerClient,
): () => Promise<string | undefined> {
  if (env.FANOUT_CALLBACK_SECRET) return async () => env.FANOUT_CALLBACK_SECRET;
  const arn = env.FANOUT_CALLBACK_SECRET_ARN;
  if (!arn) return async () => env.FANOUT_TOKEN;
  let cached: { value: string; until: number } | undefined;
  let sm: SecretsManagerClient | undefined;
  return async () => {
    if (cached && cached.until > Date.now()) return cached.value;
    sm ??= client();
    const value = (await readSecret(sm, arn))?.trim();
    if (!value) throw new Error('the callback secret is empty');
    cached = { value, until: Date.now() + TOKEN_CACHE_MS };
    return value;
  };
}
