/**
 * Header values from the worker's environment (the `headerEnv` option): a job names the variable,
 * never the value, so a credential is not written to job.json, queue messages, records or API
 * responses. The worker reads the value through a {@link SecretSource} when it starts a chunk: the
 * process environment locally, the Lambda's environment (or Secrets Manager) on AWS.
 */
import { OptionsError } from './errors.ts';

/** Reads one variable where the worker runs; undefined when it is not set. May be asynchronous (Secrets Manager). */
export type SecretSource = (variable: string) => Promise<string | undefined>;

/** Header values may not hold CR, LF, NUL or other control characters (tab aside), as in options.ts. */
const HEADER_VALUE = /^[^\x00-\x08\x0a-\x1f\x7f]*$/;

/**
 * Variables a job may never name: fanout's own configuration (the API token, the callback and proxy
 * secrets) and the platform's (on Lambda, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are the
 * worker role's credentials). Any job could otherwise send them to an origin of its choice.
 */
export const RESERVED_VARIABLE = /^(FANOUT|AWS)_/i;

/** An environment variable's name, as POSIX shells accept it. */
export const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The operator's list of variables jobs may name (comma-separated). The AWS stack always sets it
 * (the `headerSecrets` setting's names, none by default); `fanout serve` sets it empty when unset
 * ({@link closeHeaderEnvForServer}); unset (`fanout fetch`, whose user is the operator), any
 * variable not reserved may be named.
 */
export const HEADER_ENV_VARS = 'FANOUT_HEADER_ENV_VARS';

/**
 * Where API users submit jobs (`fanout serve`, and `fanout resume` of a job they submitted), no
 * variable of the operator's environment is theirs to name unless FANOUT_HEADER_ENV_VARS lists
 * it: set empty when unset, in this process's environment, which worker threads inherit.
 */
export function closeHeaderEnvForServer(env: NodeJS.ProcessEnv = process.env): void {
  env[HEADER_ENV_VARS] ??= '';
}

/**
 * What a server's operator is told at start about FANOUT_HEADER_ENV_VARS: which variables jobs may
 * name, and a warning for each listed name no job will ever be able to use (a reserved or malformed
 * name, or a variable this process does not have, which submissions naming it are refused for).
 *
 * @example
 * headerEnvForServer({ FANOUT_HEADER_ENV_VARS: 'API_TOKEN,AWS_SECRET_ACCESS_KEY', API_TOKEN: 'x' })
 * // { summary: 'jobs may name API_TOKEN (FANOUT_HEADER_ENV_VARS)', warnings: ['FANOUT_HEADER_ENV_VARS lists AWS_SECRET_ACCESS_KEY, which ...'] }
 */
export function headerEnvForServer(env: NodeJS.ProcessEnv = process.env): { summary: string; warnings: string[] } {
  const usable: string[] = [];
  const warnings: string[] = [];
  let notNames = 0;
  for (const name of listedVariables(env)) {
    // Not echoed: a value pasted where a name belongs may be a secret (many tokens are valid names:
    // sk_live_..., ghp_...); an unset entry is named only if it looks like a conventional name.
    if (!ENV_VAR_NAME.test(name)) notNames++;
    else if (RESERVED_VARIABLE.test(name)) warnings.push(`${HEADER_ENV_VARS} lists ${name}, which jobs may never name (fanout's or the platform's own configuration)`);
    else if (!env[name] && !CONVENTIONAL_NAME.test(name)) notNames++;
    else if (!env[name]) warnings.push(`${HEADER_ENV_VARS} lists ${name}, which is not set: jobs naming it are refused`);
    else if (!HEADER_VALUE.test(env[name]!)) warnings.push(`${HEADER_ENV_VARS} lists ${name}, whose value holds CR, LF or other control characters: every request naming it fails`);
    else usable.push(name);
  }
  if (notNames > 0) {
    warnings.push(`${HEADER_ENV_VARS} has ${notNames} ${notNames === 1 ? 'entry that is' : 'entries that are'} neither a variable set here nor a conventional name (not shown: it may be a value)`);
  }
  if (warnings.length > MAX_WARNINGS) warnings.splice(MAX_WARNINGS - 1, Infinity, `... and ${warnings.length - MAX_WARNINGS + 1} more about ${HEADER_ENV_VARS}`);
  const summary = usable.length > 0 ? `jobs may name ${shortList(usable)} (${HEADER_ENV_VARS})` : `jobs may name no environment variable (${HEADER_ENV_VARS} lists none that is usable)`;
  return { summary, warnings };
}

/** A name as variables are usually written (upper case, not long): an unset one is named in a warning. */
const CONVENTIONAL_NAME = /^[A-Z_][A-Z0-9_]{0,63}$/;

/** Warnings about FANOUT_HEADER_ENV_VARS at start, at most (a list of thousands is one mistake). */
const MAX_WARNINGS = 10;

/** The entries of FANOUT_HEADER_ENV_VARS (none when it is not set). */
function listedVariables(env: NodeJS.ProcessEnv): string[] {
  return (env[HEADER_ENV_VARS] ?? '').split(',').map((v) => v.trim()).filter(Boolean);
}

/** Names for a message: the first ten, and how many more. */
function shortList(names: string[]): string {
  return names.length <= 10 ? names.join(', ') : `${names.slice(0, 10).join(', ')} and ${names.length - 10} more`;
}

/**
 * Why a job may not name `variable` in `headerEnv` here, or undefined when it may.
 *
 * @example
 * refusedVariable('AWS_SECRET_ACCESS_KEY') // "it is fanout's or the platform's own configuration, never sent as a header"
 * refusedVariable('API_TOKEN', { FANOUT_HEADER_ENV_VARS: 'PARTNER_KEY', PARTNER_KEY: 'k' }) // "the operator exposes only PARTNER_KEY (FANOUT_HEADER_ENV_VARS)"
 */
export function refusedVariable(variable: string, env: NodeJS.ProcessEnv = process.env, valuesHere = true): string | undefined {
  if (RESERVED_VARIABLE.test(variable)) return "it is fanout's or the platform's own configuration, never sent as a header";
  if (env[HEADER_ENV_VARS] === undefined) return undefined;
  const listed = listedVariables(env);
  if (listed.includes(variable)) return undefined;
  // Told to API users, so only what a job can use: where the values are (serve, a worker) the
  // variables set with a usable value (a pasted token is a valid name, but never set), else (the
  // AWS API, whose list is the stack's checked headerSecrets names) the valid names; ten at most.
  const usable = (name: string) => ENV_VAR_NAME.test(name) && !RESERVED_VARIABLE.test(name) && (!valuesHere || (!!env[name] && HEADER_VALUE.test(env[name]!)));
  const exposed = listed.filter(usable);
  return exposed.length === 0 ? `the operator exposes no variable to jobs (${HEADER_ENV_VARS})` : `the operator exposes only ${shortList(exposed)} (${HEADER_ENV_VARS})`;
}

/**
 * The worker's own environment as a secret source (worker threads inherit the process's).
 *
 * @example
 * await envSecrets({ API_TOKEN: 'abc' })('API_TOKEN') // 'abc'
 */
export function envSecrets(env: NodeJS.ProcessEnv = process.env): SecretSource {
  return async (variable) => env[variable];
}

/**
 * Refuses a job whose `headerEnv` names a variable it may not ({@link refusedVariable}), or (with
 * `requireValue`) one this environment does not have, where the workers share it (`fanout fetch`,
 * `fanout serve`): better a 400 or exit 2 now than failed records. The AWS API checks names only.
 *
 * @throws {OptionsError} naming the header and the variable.
 * @example
 * checkHeaderEnv({ authorization: 'API_TOKEN' }, {}) // throws: option "headerEnv.authorization": environment variable API_TOKEN is not set
 */
export function checkHeaderEnv(headerEnv: Record<string, string> | undefined, env: NodeJS.ProcessEnv = process.env, requireValue = true): void {
  for (const [name, variable] of Object.entries(headerEnv ?? {})) {
    const refused = refusedVariable(variable, env, requireValue);
    if (refused) throw new OptionsError(`option "headerEnv.${name}": environment variable ${variable} cannot be used: ${refused}`, `headerEnv.${name}`);
    if (requireValue && !env[variable]) {
      throw new OptionsError(`option "headerEnv.${name}": environment variable ${variable} is not set (the workers read the header's value from it)`, `headerEnv.${name}`);
    }
  }
}

/** The headers of a job's `headerEnv`, or why they cannot be sent (naming the variable, never a value). */
export type ResolvedHeaders = { headers: Record<string, string> } | { error: string };

/**
 * Reads every variable of `headerEnv` through `source`. A missing or empty variable, or a value
 * that cannot be a header value, is an error naming the header and the variable; errors of the
 * source itself (Secrets Manager unreachable) are thrown, so the chunk is tried again.
 *
 * @example
 * await resolveHeaderEnv({ authorization: 'API_TOKEN' }, envSecrets({ API_TOKEN: 'Bearer x' }))
 * // { headers: { authorization: 'Bearer x' } }
 */
export async function resolveHeaderEnv(headerEnv: Record<string, string>, source: SecretSource, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedHeaders> {
  const headers: Record<string, string> = {};
  for (const [name, variable] of Object.entries(headerEnv)) {
    // Checked here too: a job stored before the rule, or planned where the list differed.
    const refused = refusedVariable(variable, env);
    if (refused) return { error: `header "${name}": environment variable ${variable} cannot be used: ${refused}` };
    const value = await source(variable);
    if (value === undefined || value === '') {
      return { error: `header "${name}": environment variable ${variable} is not set where the worker runs (option headerEnv)` };
    }
    if (!HEADER_VALUE.test(value)) {
      return { error: `header "${name}": the value of environment variable ${variable} holds CR, LF or other control characters` };
    }
    headers[name.toLowerCase()] = value;
  }
  return { headers };
}
