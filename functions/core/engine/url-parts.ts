/**
 * The parts of an http(s) URL a request needs (origin, path with query), read without the URL
 * parser when the URL is already in the form the parser would give back: most lists are, and the
 * parser costs about a microsecond per URL, twice (planning checks every URL, the worker parses it
 * again for each request). Anything the parser might change (upper case, default ports, dot
 * segments, IDNA, IPv4 shorthands, characters it percent-encodes, fragments, credentials) takes the
 * parser's path, so both paths give the same answer (test/url-parts.test.ts compares them).
 */

/** The parts of a URL that a request and its record use. */
export interface UrlParts {
  protocol: 'http:' | 'https:' | string;
  /** Scheme, host and port (default ports left out), as URL.origin. */
  origin: string;
  /** Path and query, as URL.pathname + URL.search. */
  path: string;
  /** The whole URL, as URL.href. */
  href: string;
  username: string;
  password: string;
}

const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
/**
 * Lower-case host names whose last label starts with a letter (a last label that is a number makes
 * the parser read the host as IPv4), or dotted-quad IPv4 in canonical form; an optional port without
 * leading zeros; a path, then an optional query that is not empty (`/a?` is requested as `/a`), of
 * characters the parser leaves as they are.
 */
const CANONICAL = new RegExp(
  `^(https?)://((?:${LABEL}\\.)*[a-z](?:[a-z0-9-]*[a-z0-9])?|${OCTET}(?:\\.${OCTET}){3})(?::([1-9]\\d{0,4}))?` +
    "(/[A-Za-z0-9\\-._~!$&()*+,;=:@/%]*(?:\\?[A-Za-z0-9\\-._~!$&()*+,;=:@/%?]+)?)$",
);
/** Dot segments (also percent-encoded ones) are resolved by the parser. */
const DOT_SEGMENT = /\/\.|%2e/i;
const DEFAULT_PORT: Record<string, string> = { http: '80', https: '443' };

/**
 * The URL's parts; throws as `new URL` does for an invalid URL.
 *
 * @example
 * urlParts('https://example.com/a?b=1') // { origin: 'https://example.com', path: '/a?b=1', href: 'https://example.com/a?b=1', ... }
 */
export function urlParts(url: string): UrlParts {
  const m = CANONICAL.exec(url);
  if (m) {
    const [, scheme, host, port, path] = m as unknown as [string, string, string, string | undefined, string];
    const pathOnly = path.indexOf('?') === -1 ? path : path.slice(0, path.indexOf('?'));
    if (!DOT_SEGMENT.test(pathOnly) && !host.includes('xn--') && port !== DEFAULT_PORT[scheme] && (port === undefined || Number(port) <= 65535)) {
      return { protocol: `${scheme}:`, origin: url.slice(0, url.length - path.length), path, href: url, username: '', password: '' };
    }
  }
  const parsed = new URL(url);
  return {
    protocol: parsed.protocol,
    origin: parsed.origin,
    path: parsed.pathname + parsed.search,
    href: parsed.href,
    username: parsed.username,
    password: parsed.password,
  };
}
