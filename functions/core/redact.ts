/**
 * Redaction of credentials given inline in a job's headers. Workers read the real values from
 * job.json; everything shown to people (API responses, `fanout status`, callbacks) goes through
 * {@link redactOptions}. For values that should not be stored at all, see the `headerEnv` option.
 */
import type { JobOptions } from './options.ts';

/** What a redacted value reads as. */
export const REDACTED = '***';

/** Header names whose values are credentials, whatever their case. */
const SENSITIVE_NAMES = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key']);
/** Parts of a header name that mark it as a credential (x-auth-token, x-secret, api-key, ...). */
const SENSITIVE_PARTS = ['token', 'secret', 'key', 'auth'];

/**
 * True when a header's value is treated as a credential.
 *
 * @example
 * isSensitiveHeader('X-Auth-Token') // true
 * isSensitiveHeader('accept') // false
 */
export function isSensitiveHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return SENSITIVE_NAMES.has(lower) || SENSITIVE_PARTS.some((part) => lower.includes(part));
}

/**
 * The headers with the values of sensitive ones replaced by {@link REDACTED}.
 *
 * @example
 * redactHeaders({ Authorization: 'Bearer abc', accept: 'text/html' }) // { Authorization: '***', accept: 'text/html' }
 */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = isSensitiveHeader(name) ? REDACTED : value;
  return out;
}

/**
 * Job options as they may be shown: sensitive header values redacted, and a CA bundle (up to 1 MiB
 * of public certificates) replaced by its size so statuses stay small.
 *
 * @example
 * redactOptions(job.options).headers.authorization // '***'
 */
export function redactOptions(options: JobOptions): JobOptions {
  return {
    ...options,
    headers: redactHeaders(options.headers ?? {}),
    ...(options.ca ? { ca: `(${Buffer.byteLength(options.ca)} bytes of PEM certificates)` } : {}),
  };
}
