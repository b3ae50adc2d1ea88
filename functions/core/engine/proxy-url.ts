/**
 * The proxy URL rules, apart from the proxy machinery so the options schema (used by the API too)
 * can check a URL without loading undici.
 */

/** Proxy settings, stated once. */
export const PROXY_DEFAULTS = {
  /** The worker's environment variable holding the proxy's credentials, `user:password`. */
  authEnv: 'FANOUT_PROXY_AUTH',
  /** The proxies a server (`serve`, AWS) sends those credentials to; any other proxy a job names gets none. */
  authForEnv: 'FANOUT_PROXY_AUTH_FOR',
  /** Longest proxy URL accepted. */
  maxUrlLength: 2048,
} as const;

/**
 * What is wrong with a proxy URL given as a job option, or null. Credentials are refused (see the
 * comment of proxy.ts); so are paths, queries and schemes other than http and https.
 *
 * @example
 * proxyUrlProblem('http://127.0.0.1:3128') // null
 * proxyUrlProblem('http://me:pw@proxy:3128') // 'may not contain credentials: ...'
 */
export function proxyUrlProblem(text: string, allowCredentials = false): string | null {
  if (text.length > PROXY_DEFAULTS.maxUrlLength) return `at most ${PROXY_DEFAULTS.maxUrlLength} characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'expected a proxy URL such as http://proxy.example:3128';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `expected an http:// or https:// proxy URL, got ${url.protocol}`;
  if (!url.hostname) return 'has no host';
  if ((url.username || url.password) && !allowCredentials) {
    return `may not contain credentials: job options are stored and shown; set ${PROXY_DEFAULTS.authEnv}=user:password in the worker's environment instead`;
  }
  if (url.pathname !== '/' || url.search || url.hash) return 'must not have a path, query or fragment';
  return null;
}

