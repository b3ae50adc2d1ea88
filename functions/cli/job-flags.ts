/**
 * The job options as command-line flags, shared by `fanout fetch` and `fanout submit`. Values are
 * only converted here; validation (ranges, enums) is the options schema's, so the CLI and the API
 * refuse the same things with the same words.
 */
import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { OptionsError, UsageError } from '../core/errors.ts';
import type { JobOptions } from '../core/options.ts';

/** Flag of each option: the contract's names. */
export const FLAG_OF: Record<keyof JobOptions, string> = {
  concurrency: '--concurrency',
  perHost: '--per-host',
  timeoutMs: '--timeout-ms',
  retries: '--retries',
  retryBaseMs: '--retry-base-ms',
  retryMaxDelayMs: '--retry-max-delay-ms',
  maxRedirects: '--max-redirects',
  method: '--method',
  headers: '--header',
  body: '--data',
  bodies: '--bodies',
  maxBodyBytes: '--max-body-bytes',
  chunkSize: '--chunk-size',
  userAgent: '--user-agent',
  callbackUrl: '--callback-url',
  insecure: '--insecure',
  ca: '--ca',
  proxy: '--proxy',
  http2: '--http2',
  ratePerHost: '--rate-per-host',
};

function integer(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value.trim())) throw new OptionsError(`${flag}: expected a whole number, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

function decimal(flag: string) {
  return (value: string): number => {
    if (!/^(\d+\.?\d*|\.\d+)$/.test(value.trim())) throw new OptionsError(`${flag}: expected a number, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

/** A whole number within a range, for flags that are not job options (exit 2 otherwise). */
export function wholeNumber(flag: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** `--workers`: worker threads, by default one per core. */
export function workersOf(flag: string | undefined): number {
  return flag === undefined ? availableParallelism() : wholeNumber('--workers', flag, 1, 256);
}

function header(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const colon = value.indexOf(':');
  if (colon <= 0) throw new OptionsError(`--header: expected "name: value", got ${JSON.stringify(value)}`);
  return { ...previous, [value.slice(0, colon).trim()]: value.slice(colon + 1).trim() };
}

/** `--ca FILE`: the option carries the PEM text, so a remote worker needs no file. */
function pemFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new OptionsError(`--ca: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'ca');
  }
}

/** Adds every job option flag to a command. */
export function addJobFlags(command: Command): Command {
  const int = (name: keyof JobOptions, description: string) =>
    command.addOption(new Option(`${FLAG_OF[name]} <n>`, description).argParser(integer(FLAG_OF[name])));
  int('concurrency', 'requests in flight per worker (default 64)');
  int('perHost', 'connections per origin per worker (default 8)');
  int('timeoutMs', 'per attempt, from connect to last body byte (default 15000)');
  int('retries', 'extra attempts on network errors, 429 and 5xx (default 2)');
  int('retryBaseMs', 'first backoff delay, doubled each attempt, with jitter (default 250)');
  int('retryMaxDelayMs', 'cap on any wait between attempts, Retry-After included (default 30000)');
  int('maxRedirects', 'redirects followed; 0 returns the 3xx itself (default 5)');
  command.option('--method <method>', 'HTTP method (default GET)');
  command.option('--header <header>', 'request header "name: value" (repeatable)', header);
  command.option('--data <body>', 'request body');
  command.option('--bodies <mode>', 'none | inline | store (default inline)');
  int('maxBodyBytes', 'cut point for bodies, after decoding (default 1048576)');
  int('chunkSize', 'input lines per queue message (default 500)');
  command.option('--user-agent <ua>', 'User-Agent header (default fanout/VERSION)');
  command.option('--callback-url <url>', 'POSTed the final status when the job ends');
  command.option('--insecure', 'skip TLS certificate verification');
  command.option('--ca <file>', 'PEM file of certificates to trust besides the system roots', pemFile);
  command.option(
    '--proxy <url>',
    'proxy for every request, http(s)://host:port; credentials from FANOUT_PROXY_AUTH=user:password (without it, fetch reads HTTP_PROXY, HTTPS_PROXY, NO_PROXY)',
  );
  command.option('--http2', 'offer HTTP/2 on TLS connections (the server chooses)');
  command.addOption(
    new Option('--rate-per-host <n>', 'requests started per second per origin, per worker (e.g. 5 or 0.5)').argParser(decimal('--rate-per-host')),
  );
  return command;
}

/** The job options given on the command line, keyed by option name (unset ones left out). */
export function jobOptionsFromFlags(flags: Record<string, unknown>): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  const set = (name: keyof JobOptions, value: unknown) => {
    if (value !== undefined) options[name] = value;
  };
  for (const name of Object.keys(FLAG_OF) as (keyof JobOptions)[]) {
    const key = name === 'headers' ? 'header' : name === 'body' ? 'data' : name;
    set(name, flags[key]);
  }
  return options;
}

/** Rewrites an options error to name the flag rather than the JSON field. */
export function flagError(error: OptionsError): OptionsError {
  const flag = error.field ? FLAG_OF[error.field.split('.')[0] as keyof JobOptions] : undefined;
  if (!flag) return error;
  return new OptionsError(error.message.replace(/^option "[^"]+"/, flag), error.field);
}
