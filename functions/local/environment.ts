/**
 * The embedded runtime's configuration from FANOUT_* variables, read in one place (`fanout serve`
 * and `fanout fetch` take it; flags win over it). The address guard's variables
 * (FANOUT_ALLOW_PRIVATE, FANOUT_ALLOW_CIDRS) are parsed by AddressGuard.fromEnv.
 */

/** Defaults, stated once. */
export const LOCAL_ENV_DEFAULTS = {
  dataDir: './fanout-data',
} as const;

export interface LocalEnv {
  /** FANOUT_DATA_DIR: where jobs are kept. */
  dataDir: string;
  /** FANOUT_TOKEN: the API's bearer token (required beyond loopback). */
  token: string | undefined;
  /** FANOUT_CALLBACK_SECRET: signs completion callbacks (else the token). */
  callbackSecret: string | undefined;
  /** FANOUT_SCHEDULES: the schedules file `fanout serve` runs. */
  schedulesFile: string | undefined;
}

/**
 * @example
 * const { dataDir } = readLocalEnv(); // FANOUT_DATA_DIR or ./fanout-data
 */
export function readLocalEnv(env: NodeJS.ProcessEnv = process.env): LocalEnv {
  const value = (name: string) => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  return {
    dataDir: value('FANOUT_DATA_DIR') ?? LOCAL_ENV_DEFAULTS.dataDir,
    token: value('FANOUT_TOKEN'),
    callbackSecret: value('FANOUT_CALLBACK_SECRET'),
    schedulesFile: value('FANOUT_SCHEDULES'),
  };
}

/**
 * The key completion callbacks are signed with where this process runs jobs: FANOUT_CALLBACK_SECRET,
 * else the API token (as `serve` signs them; `fanout resume` and a local `fanout cancel` of its jobs too).
 */
export function localCallbackSecret(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const local = readLocalEnv(env);
  return local.callbackSecret ?? local.token;
}
