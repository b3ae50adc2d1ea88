/**
 * Where the AWS worker reads the `headerEnv` option's variables: its own environment; a value that
 * is a Secrets Manager ARN (`arn:aws:secretsmanager:...`) is replaced by that secret's string,
 * cached like the API token (TOKEN_CACHE_MS), so a rotation is picked up without a cold start. The
 * worker's role needs secretsmanager:GetSecretValue on such secrets.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretSource } from '../core/header-env.ts';
import { TOKEN_CACHE_MS, readSecret, secretsManagerClient } from './token.ts';

/** A variable whose value is this is read from Secrets Manager. */
const SECRET_ARN = /^arn:aws[\w-]*:secretsmanager:/;

/**
 * @example
 * const source = awsHeaderSecrets(); // API_TOKEN=arn:aws:secretsmanager:eu-west-1:123:secret:api -> the secret's value
 * await source('API_TOKEN')
 */
export function awsHeaderSecrets(
  env: NodeJS.ProcessEnv = process.env,
  client: () => SecretsManagerClient = secretsManagerClient,
): SecretSource {
  const cache = new Map<string, { value: string; until: number }>();
  let sm: SecretsManagerClient | undefined;
  return async (variable) => {
    const value = env[variable];
    if (value === undefined || !SECRET_ARN.test(value.trim())) return value;
    const arn = value.trim();
    const cached = cache.get(arn);
    if (cached && cached.until > Date.now()) return cached.value;
    sm ??= client();
    // An error here (no access, throttled) is thrown: the chunk is tried again by the queue.
    const secret = (await readSecret(sm, arn))?.trim() ?? '';
    if (secret) cache.set(arn, { value: secret, until: Date.now() + TOKEN_CACHE_MS });
    return secret;
  };
}
