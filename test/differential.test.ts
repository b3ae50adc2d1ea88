/**
 * The differential test: one list of URLs on three servers of other makers (nginx, lighttpd,
 * python3-httpbin under gunicorn; Debian packages, started by the test) fetched by curl and by the
 * real fanout CLI, compared per URL: status, final URL, redirect count, the body (as the Unicode text
 * a browser shows for text types, as bytes otherwise) and its sha256.
 *
 * Where the two differ on purpose, the case names the difference in DIFFERENCES with its reason and
 * asserts exactly what each side gives. Where fanout is wrong (what a browser does is the reference),
 * the case names the bug in its title and asserts the browser's behaviour: those fail until the engine
 * is fixed (issue 12).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserText, isTextual } from './support/browser-text.ts';
import { curlAll, fanoutAll, run, type CurlResult, type FanoutRecord } from './support/differential-clients.ts';
import { COOKIE_A, COOKIE_B, lighttpdConfig, nginxServerBlock, writeFixtures } from './support/differential-sites.ts';
import {
  requireBinary,
  startHttpbin,
  startLighttpd,
  startNginx,
  startNginxHttp2,
  startTinyproxy,
  TEST_CERT,
  type RealServer,
} from './support/real-servers.ts';
import { tempDir } from './support/tmp.ts';

/** Both clients get the same limits. */
const TIMEOUT_MS = 4_000;
const MAX_REDIRECTS = 5;
/** fanout's default cut for kept bodies (maxBodyBytes). */
const MAX_BODY_BYTES = 1_048_576;

type ServerName = 'nginx' | 'lighttpd' | 'httpbin';

// ---------------------------------------------------------------------------------------------
// The list.

interface Case {
  server: ServerName;
  /** Path and query; `{nginx}`, `{lighttpd}`, `{httpbin}` are replaced by those servers' URLs. */
  path: string;
  /** `user:password` put in the URL. */
  userinfo?: string;
  /** A fanout bug: the title names it and the case asserts what a browser (and curl) does. */
  bug?: string;
  /** An explained difference (a key of DIFFERENCES). */
  differs?: keyof typeof DIFFERENCES;
  /** Extra assertions for this URL. */
  check?: (c: CurlResult, r: FanoutRecord) => void;
}

const STATIC_PATHS = [
  '/utf8.html', '/utf8.txt', '/utf8-quoted.txt', '/ascii.txt', '/latin1-only.txt', '/sjis.txt', '/euc-kr.txt', '/gbk.txt',
  '/koi8r.txt', '/data.json', '/style.css', '/image.svg', '/empty.txt', '/random.bin', '/archive.gz', '/big.txt',
  '/dir/', '/dir', '/dir/index.html', '/gz/page.html', '/%C3%BCmlaut.txt', '/file%20with%20space.txt', '/missing.html',
  '/missing/deeper?q=1', '/utf8.txt?query=yes&x=%C3%BC', '/utf8.txt#fragment', '/./utf8.txt', '/dir/../utf8.txt',
  '/chain/1', '/mid-headers.txt',
];

const WINDOWS_1252 = ['/cp1252-latin1.html', '/cp1252-latin1.txt', '/cp1252-iso88591-upper.txt', '/cp1252-usascii.txt', '/cp1252.html', '/cp1252.txt'];

const setCookieArray = (c: CurlResult, r: FanoutRecord) => {
  expect(c.headers['set-cookie']).toEqual([COOKIE_A, COOKIE_B]);
  expect(r.headers['set-cookie']).toEqual([COOKIE_A, COOKIE_B]);
};

function staticCases(server: 'nginx' | 'lighttpd'): Case[] {
  return [
    ...STATIC_PATHS.map((path) => ({ server, path })),
    ...WINDOWS_1252.map((path) => ({ server, path, bug: 'windows-1252' })),
    { server, path: '/meta-cp1252.html', bug: 'charset sniffing (<meta charset>)' },
    { server, path: '/meta-http-equiv.html', bug: 'charset sniffing (<meta http-equiv>)' },
    { server, path: '/bom-utf8.html' },
    { server, path: '/bom-vs-header.txt', bug: 'charset sniffing (a BOM wins over the header)' },
    { server, path: '/header-beats-meta.html' },
    { server, path: '/latin1-decl.xml', differs: 'xmlDeclaration' },
    { server, path: '/bom-utf16le.txt', bug: 'charset sniffing (UTF-16 BOM)' },
    { server, path: '/unknown-charset.txt', bug: 'charset sniffing (unknown label ignored)' },
    { server, path: '/bad-utf8.txt', differs: 'undecodable' },
    { server, path: '/huge.bin', differs: 'cut' },
    // nginx's `return 302 /ümlaut.txt` sends the raw bytes; lighttpd's url.redirect percent-encodes them, its CGI does not.
    server === 'nginx' ? { server, path: '/umlaut-redirect', bug: 'raw UTF-8 Location' } : { server, path: '/umlaut-redirect' },
    ...(server === 'lighttpd' ? lighttpdOnlyCases() : []),
    { server, path: '/loop', differs: 'tooManyRedirects' },
    { server, path: server === 'nginx' ? '/cookies.txt' : '/cookies.cgi', bug: 'Set-Cookie', check: setCookieArray },
    { server, path: '/big-headers.txt', bug: '80 KB headers' },
    { server, path: '/to?to={httpbin}/encoding/utf8' },
  ];
}

function nginxOnlyCases(): Case[] {
  const server = 'nginx';
  return [
    '/umlaut-redirect-encoded', '/space-redirect', '/r303', '/r308', '/dotdot-redirect', '/query-redirect', '/fragment-redirect',
    '/gone', '/no-content', '/error', '/unavailable', '/inline-json', '/gz/notes.txt', '/to?to={lighttpd}/utf8.html',
    '/to?to=/chain/1', '/to?to=utf8.txt', '/enc/double-gzip.txt', '/enc/x-gzip.txt',
  ]
    .map((path): Case => ({ server, path }))
    .concat([
      { server, path: '/r300', differs: 'curlFollows300' },
      { server, path: '/enc/unknown.txt', differs: 'unknownEncoding' },
      { server, path: '/enc/bad-gzip.txt', differs: 'badEncoding' },
    ]);
}

function lighttpdOnlyCases(): Case[] {
  const server = 'lighttpd';
  return [
    { server, path: '/loc/umlaut.cgi', bug: 'raw UTF-8 Location' },
    { server, path: '/loc/umlaut-query.cgi', bug: 'raw UTF-8 Location' },
    { server, path: '/loc/relative.cgi' },
    { server, path: '/loc/scheme-relative.cgi' },
    { server, path: '/loc/backslash.cgi', differs: 'backslash' },
    { server, path: '/loc/space-in-query.cgi', differs: 'curlPlusInQuery' },
    { server, path: '/loc/trailing-space.cgi' },
    // lighttpd drops an empty Location header: a plain 302 for both.
    { server, path: '/loc/empty.cgi' },
    { server, path: '/loc/mailto.cgi', differs: 'otherScheme' },
  ];
}

function httpbinCases(): Case[] {
  const server = 'httpbin';
  const statuses = [200, 201, 202, 203, 204, 205, 206, 300, 304, 400, 401, 402, 403, 404, 405, 406, 409, 410, 418, 422, 429, 451, 500, 501, 502, 503, 504];
  const cases: Case[] = statuses.map((code) => ({ server, path: `/status/${code}` }));
  // httpbin answers /status/301, 302, 303, 307 with a redirect to /redirect/1, then /get (an echo).
  for (const code of [301, 302, 303, 307]) cases.push({ server, path: `/status/${code}`, differs: 'echo' });
  for (const n of [1, 2, 3, 5]) {
    cases.push({ server, path: `/redirect/${n}`, differs: 'echo' });
    cases.push({ server, path: `/absolute-redirect/${n}`, differs: 'echo' });
    cases.push({ server, path: `/relative-redirect/${n}`, differs: 'echo' });
  }
  for (const path of ['/redirect/6', '/absolute-redirect/6', '/relative-redirect/7']) cases.push({ server, path, differs: 'tooManyRedirects' });
  cases.push(
    ...['/get', '/get?a=1&b=%C3%BC', '/anything/x?y=z', '/headers', '/user-agent', '/gzip', '/deflate', '/brotli', '/stream/5', '/cookies', '/cookies/set?k=v'].map(
      (path): Case => ({ server, path, differs: 'echo' }),
    ),
    ...[
      '/html', '/robots.txt', '/xml', '/encoding/utf8', '/deny', '/bytes/0',
      '/range/1000', '/drip?numbytes=10&duration=0.5&delay=0', '/base64/SFRUUEJJTiBpcyBhd2Vzb21l', '/image/png', '/image/svg',
      '/image/jpeg', '/image/webp', '/links/5/2', '/response-headers?Content-Type=text%2Fplain%3B+charset%3Dutf-8&X-Test=1',
      '/response-headers?Content-Type=text%2Fhtml%3B+charset%3Dshift_jis', '/redirect-to?url=%2Fhtml', '/redirect-to?url=%2Fhtml&status_code=307',
      '/redirect-to?url=%2Fhtml&status_code=308', '/redirect-to?url={nginx}%2Futf8.txt', '/redirect-to?url={lighttpd}%2Fdir',
      // httpbin (werkzeug) sends this Location UTF-8-encoded twice (/%C3%83%C2%BCmlaut): both clients follow it to a 404.
      '/redirect-to?url=%2F%C3%BCmlaut', '/basic-auth/user/passwd', '/hidden-basic-auth/user/passwd', '/bearer', '/missing-route',
    ].map((path): Case => ({ server, path })),
    ...['/delay/1', '/cache', '/etag/abc'].map((path): Case => ({ server, path, differs: 'echo' })),
    { server, path: '/uuid', differs: 'random' },
    { server, path: '/bytes/1024?seed=3', differs: 'seeded' },
    { server, path: '/stream-bytes/5000?seed=4&chunk_size=256', differs: 'seeded' },
    { server, path: '/delay/10', differs: 'timeout' },
    // Credentials in the URL become a Basic Authorization header in both clients.
    { server, path: '/basic-auth/user/passwd', userinfo: 'user:passwd' },
    { server, path: '/hidden-basic-auth/user/passwd', userinfo: 'user:passwd' },
    { server, path: '/response-headers?Set-Cookie=a%3D1&Set-Cookie=b%3D2%3B+Expires%3DWed%2C+21+Oct+2035+07%3A28%3A00+GMT', bug: 'Set-Cookie',
      check: (c, r) => {
        expect(c.headers['set-cookie']).toEqual(['a=1', 'b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT']);
        expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT']);
      } },
  );
  return cases;
}

const CASES: Case[] = [...staticCases('nginx'), ...nginxOnlyCases(), ...staticCases('lighttpd'), ...httpbinCases()];

// ---------------------------------------------------------------------------------------------
// The comparison.

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/** Bytes compared by length and hash (a deep equality on a megabyte takes seconds). */
function expectSameBytes(actual: Buffer | undefined, expected: Buffer): void {
  expect(actual?.length).toBe(expected.length);
  expect(sha256(actual ?? '')).toBe(sha256(expected));
}

/**
 * Once records carry `sha256` (issue 12 item 4: hex SHA-256 of the content-decoded body bytes kept,
 * null when no body came), it must be the hash of what curl received.
 */
function expectSameSha256(r: FanoutRecord, curlBody: Buffer): void {
  if (r.sha256 !== undefined) expect(r.sha256).toBe(curlBody.length > 0 ? sha256(curlBody) : null);
}

/** What fanout's record says the body is: text, or bytes. */
function fanoutBody(r: FanoutRecord): { text?: string; bytes?: Buffer } {
  if (r.body === undefined) return { bytes: Buffer.alloc(0) };
  return r.bodyEncoding === 'base64' ? { bytes: Buffer.from(r.body, 'base64') } : { text: r.body };
}

function contentTypeOf(c: CurlResult): string | null {
  return c.contentType;
}

/** Compares the bodies: as browser text for text types, as bytes otherwise, and their sha256. */
function expectSameBody(c: CurlResult, r: FanoutRecord): void {
  const mine = fanoutBody(r);
  if (isTextual(contentTypeOf(c)) && c.body.length > 0) {
    const text = browserText(c.body, contentTypeOf(c));
    expect(mine.text, `fanout kept the text as ${r.bodyEncoding}`).toBe(text);
    expect(sha256(mine.text ?? '')).toBe(sha256(text));
  } else {
    expectSameBytes(mine.bytes ?? Buffer.from(mine.text ?? '', 'utf8'), c.body);
  }
  expect(r.bytes).toBe(c.body.length);
  expectSameSha256(r, c.body);
}

function expectSameResponse(c: CurlResult, r: FanoutRecord): void {
  expect(c.exitcode, `curl failed: ${c.errormsg}`).toBe(0);
  expect(r.error).toBeNull();
  expect(r.status).toBe(c.status);
  expect(r.finalUrl).toBe(upperCaseEscapes(c.finalUrl));
  expect(r.redirects).toBe(c.redirects);
  // Repeated Content-Type headers (httpbin's /response-headers adds one) are joined, as Fetch's Headers.get does.
  expect(r.headers['content-type'] ?? null).toBe(c.headers['content-type']?.join(', ') ?? null);
}

/**
 * curl writes the percent-escapes it adds to a redirect target in lower case (%c3%bc); browsers and WHATWG URL
 * in upper case. Both name the same bytes (RFC 3986 section 6.2.2.1), so curl's are upper-cased before comparing.
 */
function upperCaseEscapes(url: string): string {
  return url.replace(/%[0-9a-f]{2}/gi, (escape) => escape.toUpperCase());
}

/** httpbin bodies that echo the request: the same JSON once the request headers and the client's address are dropped. */
function echoed(json: string): unknown {
  const value = JSON.parse(json) as Record<string, unknown>;
  delete value.headers;
  delete value.origin;
  delete value['user-agent'];
  return value;
}

/**
 * Differences on purpose. Each says why, which comparisons it replaces, and asserts what each side gives.
 */
const DIFFERENCES = {
  echo: {
    reason: 'httpbin echoes the request headers (User-Agent, Accept, Accept-Encoding differ between curl and fanout); compared without them',
    check(c: CurlResult, r: FanoutRecord) {
      expectSameResponse(c, r);
      const body = fanoutBody(r).text ?? '';
      if (c.body.length === 0) return expect(body).toBe('');
      const curlLines = browserText(c.body, c.contentType).trim().split('\n');
      const fanoutLines = body.trim().split('\n');
      expect(fanoutLines.map(echoed)).toEqual(curlLines.map(echoed));
    },
  },
  undecodable: {
    reason: 'bytes invalid in the declared charset: a browser shows U+FFFD; fanout keeps the exact bytes as base64 (nothing lost)',
    check(c: CurlResult, r: FanoutRecord) {
      expectSameResponse(c, r);
      expect(browserText(c.body, c.contentType)).toContain('\uFFFD');
      expect(r.bodyEncoding).toBe('base64');
      expectSameBytes(fanoutBody(r).bytes, c.body);
    },
  },
  xmlDeclaration: {
    reason:
      'XML with only an <?xml encoding="ISO-8859-1"?> declaration: browsers decode it by the declaration; fanout follows issue 12 (header, BOM, HTML <meta>), not the XML declaration, and keeps the bytes as base64',
    check(c: CurlResult, r: FanoutRecord) {
      expectSameResponse(c, r);
      expect(browserText(c.body, c.contentType)).toContain('café “quoted”');
      expect(r.bodyEncoding).toBe('base64');
      expectSameBytes(fanoutBody(r).bytes, c.body);
    },
  },
  cut: {
    reason: `fanout keeps at most maxBodyBytes (${MAX_BODY_BYTES}) of a body and says so with truncated: true; curl has no limit`,
    check(c: CurlResult, r: FanoutRecord) {
      expectSameResponse(c, r);
      expect(c.body.length).toBeGreaterThan(MAX_BODY_BYTES);
      expect(r.truncated).toBe(true);
      expect(r.bytes).toBe(MAX_BODY_BYTES);
      expectSameBytes(fanoutBody(r).bytes, c.body.subarray(0, MAX_BODY_BYTES));
      expectSameSha256(r, c.body.subarray(0, MAX_BODY_BYTES));
    },
  },
  tooManyRedirects: {
    reason: `more than ${MAX_REDIRECTS} redirects: curl fails (exit 47) after following ${MAX_REDIRECTS}; fanout records too_many_redirects with the last 3xx`,
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.exitcode).toBe(47);
      expect(r.error?.code).toBe('too_many_redirects');
      expect(r.status).toBe(c.status);
      expect(r.redirects).toBe(c.redirects);
      expect(r.finalUrl).toBe(c.finalUrl);
      expect(r.ok).toBe(false);
    },
  },
  timeout: {
    reason: `no response within ${TIMEOUT_MS} ms: curl exits 28 with code 000, fanout records status null and error timeout`,
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.exitcode).toBe(28);
      expect(c.status).toBe(0);
      expect(r.status).toBeNull();
      expect(r.error?.code).toBe('timeout');
    },
  },
  seeded: {
    reason:
      "httpbin seeds Python's process-wide random per request; under gunicorn's threads, requests at once draw from it in turn, so the same seed can give other bytes: compared by status and length",
    check(c: CurlResult, r: FanoutRecord) {
      expectSameResponse(c, r);
      expect(fanoutBody(r).bytes?.length).toBe(c.body.length);
      expect(r.bytes).toBe(c.body.length);
    },
  },
  random: {
    reason: 'httpbin /uuid answers a new random UUID to each request',
    check(c: CurlResult, r: FanoutRecord) {
      expectSameResponse(c, r);
      const uuid = /^\{"uuid":"[0-9a-f-]{36}"\}$/;
      expect(browserText(c.body, c.contentType).replace(/\s/g, '')).toMatch(uuid);
      expect((fanoutBody(r).text ?? '').replace(/\s/g, '')).toMatch(uuid);
    },
  },
  backslash: {
    reason: 'a Location with a backslash (\\utf8.txt): browsers and fanout (WHATWG URL) read it as a slash; curl sends it as is (404 here)',
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.finalUrl).toContain('/loc/\\utf8.txt');
      expect(c.status).toBe(404);
      expect(r.finalUrl).toBe(new URL('/utf8.txt', c.finalUrl).href);
      expect(r.status).toBe(200);
      expect(r.redirects).toBe(c.redirects);
    },
  },
  curlPlusInQuery: {
    reason: 'a space in the query of a Location: curl sends it as +, browsers and fanout (WHATWG URL) as %20',
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.finalUrl).toMatch(/\?a\+b$/);
      expect(r.finalUrl).toBe(c.finalUrl.replace('?a+b', '?a%20b'));
      expect(r.status).toBe(c.status);
      expect(r.redirects).toBe(c.redirects);
      expectSameBody(c, r);
    },
  },
  otherScheme: {
    reason: 'a redirect to mailto: curl counts the redirect then fails (exit 1); fanout records invalid_url with the 3xx and 0 redirects followed',
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.exitcode).toBe(1);
      expect(c.status).toBe(302);
      expect(c.redirects).toBe(1);
      expect(r.status).toBe(302);
      expect(r.redirects).toBe(0);
      expect(r.error?.code).toBe('invalid_url');
      expect(r.finalUrl).toBe(c.finalUrl);
    },
  },
  unknownEncoding: {
    reason: 'an unknown Content-Encoding: curl --compressed fails (exit 61); fanout keeps the bytes as sent, as base64',
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.exitcode).toBe(61);
      expect(r.status).toBe(200);
      expect(r.error).toBeNull();
      expect(r.bodyEncoding).toBe('base64');
      expect(fanoutBody(r).bytes?.toString()).toBe('sent with Content-Encoding: x-custom\n');
    },
  },
  badEncoding: {
    reason: 'a body that is not in its Content-Encoding: both fail; curl exits 61, fanout records protocol with the status that came',
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.exitcode).toBe(61);
      expect(r.error?.code).toBe('protocol');
      expect(r.status).toBe(200);
    },
  },
  curlFollows300: {
    reason: 'curl -L follows a Location on any 3xx, 300 included; browsers (Fetch standard) and fanout follow only 301, 302, 303, 307, 308',
    check(c: CurlResult, r: FanoutRecord) {
      expect(c.redirects).toBe(1);
      expect(c.status).toBe(200);
      expect(r.status).toBe(300);
      expect(r.redirects).toBe(0);
    },
  },
} satisfies Record<string, { reason: string; check(c: CurlResult, r: FanoutRecord): void }>;

// ---------------------------------------------------------------------------------------------

const servers = {} as Record<ServerName, RealServer>;
let curlResults: CurlResult[] = [];
let records: FanoutRecord[] = [];
let urls: string[] = [];

function resolvePath(path: string): string {
  return path.replace(/\{(nginx|lighttpd|httpbin)\}/g, (_, name: ServerName) => servers[name].url);
}

function title(c: Case): string {
  const what = `${c.server} ${c.userinfo ? `(${c.userinfo}@) ` : ''}${c.path}`;
  if (c.bug) return `${c.bug}: ${what} (fanout bug, asserted as a browser does)`;
  if (c.differs) return `${what} differs on purpose: ${DIFFERENCES[c.differs].reason}`;
  return `${what}: curl and fanout agree`;
}

describe('differential: curl and fanout on nginx, lighttpd and httpbin', () => {
  const dir = tempDir('fanout-differential-');

  beforeAll(async () => {
    const root = join(dir, 'www');
    mkdirSync(root);
    writeFixtures(root, MAX_BODY_BYTES + 300_000);
    const started = await Promise.allSettled([
      startNginx({ root, server: nginxServerBlock() }),
      startLighttpd({ root, config: lighttpdConfig() }),
      startHttpbin(),
    ]);
    started.forEach((s, i) => {
      if (s.status === 'fulfilled') servers[(['nginx', 'lighttpd', 'httpbin'] as const)[i]!] = s.value;
    });
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    urls = CASES.map((c) => `${servers[c.server].url.replace('//', c.userinfo ? `//${c.userinfo}@` : '//')}${resolvePath(c.path)}`);
    const limits = { timeoutMs: TIMEOUT_MS, maxRedirects: MAX_REDIRECTS };
    [curlResults, records] = await Promise.all([curlAll(urls, dir, limits), fanoutAll(urls, dir, limits)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s.stop()));
  });

  it('fetches every URL of the list once with each client, in order', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(150);
    expect(curlResults.filter(Boolean)).toHaveLength(urls.length);
    expect(records.map((r) => r.url)).toEqual(urls);
  });

  it.each(CASES.map((c, i) => [title(c), c, i] as const))('%s', (_title, c, i) => {
    const curl = curlResults[i]!;
    const record = records[i]!;
    if (c.differs) DIFFERENCES[c.differs].check(curl, record);
    else {
      expectSameResponse(curl, record);
      expectSameBody(curl, record);
    }
    c.check?.(curl, record);
  });
});

describe('real servers for the HTTP/2 and proxy tests', () => {
  it('a missing server binary is an error naming the Debian package, never a skip', () => {
    expect(() => requireBinary('fanout-no-such-server', 'fanout-no-such-package')).toThrow(
      'fanout-no-such-server is not installed: run `apt-get install fanout-no-such-package`',
    );
  });

  it('nginx speaks HTTP/2 over TLS with the test certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-h2-'));
    writeFileSync(join(dir, 'index.html'), 'h2\n');
    const h2 = await startNginxHttp2({ root: dir });
    try {
      const { stdout } = await run(requireBinary('curl', 'curl'), ['-s', '--http2', '--cacert', TEST_CERT.cert, '-w', '%{http_version} %{http_code}', '-o', '/dev/null', `${h2.url}/`]);
      expect(stdout).toBe('2 200');
    } finally {
      await h2.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tinyproxy forwards a request and logs it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-proxy-'));
    writeFileSync(join(dir, 'hello.txt'), 'through the proxy\n');
    const [proxy, origin] = await Promise.all([startTinyproxy(), startNginx({ root: dir })]);
    try {
      const { stdout } = await run(requireBinary('curl', 'curl'), ['-s', '--proxy', proxy.url, `${origin.url}/hello.txt`]);
      expect(stdout).toBe('through the proxy\n');
      expect(proxy.read('tinyproxy.log')).toContain(`${origin.url}/hello.txt`);
    } finally {
      await Promise.all([proxy.stop(), origin.stop()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
