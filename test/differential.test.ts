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
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserText, isTextual } from './support/browser-text.ts';
import { fanout } from './support/cli.ts';
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
// The fixtures: files both static servers serve from one folder.

const latin1 = (s: string) => Buffer.from(s, 'latin1');
/** windows-1252 bytes 0x80-0x9F: curly quotes, dashes, the euro sign, ellipsis, trademark. */
const CP1252_BYTES = latin1('He said \x93hello\x94 \x96 it costs 5\x80 \x85 caf\xe9 cr\xe8me\x99\n');
const CP1252_HTML = Buffer.concat([latin1('<!doctype html><title>cp1252</title><p>'), CP1252_BYTES]);
const LOREM = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. Ünïcödé ✓ €\n';

/** Deterministic pseudo-random bytes (the same file every run). */
function pseudoRandom(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function writeFixtures(root: string): void {
  const files: Record<string, Buffer | string> = {
    'utf8.html': '<!doctype html><meta charset=utf-8><title>ü</title><p>“smart” — € ✓ 日本語</p>\n',
    'utf8.txt': LOREM,
    'utf8-quoted.txt': LOREM,
    'ascii.txt': 'plain ascii\n',
    'cp1252-latin1.html': CP1252_HTML,
    'cp1252-latin1.txt': CP1252_BYTES,
    'cp1252-iso88591-upper.txt': CP1252_BYTES,
    'cp1252-usascii.txt': CP1252_BYTES,
    'cp1252.html': CP1252_HTML,
    'cp1252.txt': CP1252_BYTES,
    'latin1-only.txt': latin1('caf\xe9 cr\xe8me br\xfbl\xe9e \xa9 \xbd\n'),
    'meta-cp1252.html': Buffer.concat([latin1('<!doctype html><meta charset=windows-1252><title>meta</title><p>'), CP1252_BYTES]),
    'meta-http-equiv.html': Buffer.concat([
      latin1('<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"></head><body>'),
      CP1252_BYTES,
    ]),
    'bom-utf8.html': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<!doctype html><p>BOM “utf-8” €</p>\n')]),
    'bom-utf16le.txt': Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('UTF-16 with a BOM: “€”\n', 'utf16le')]),
    'sjis.txt': Buffer.from([0x93, 0xfa, 0x96, 0x7b, 0x8c, 0xea, 0x0a]),
    'euc-kr.txt': Buffer.from([0xc7, 0xd1, 0xb1, 0xb9, 0xbe, 0xee, 0x0a]),
    'gbk.txt': Buffer.from([0xd6, 0xd0, 0xce, 0xc4, 0x0a]),
    'koi8r.txt': Buffer.from([0xf0, 0xd2, 0xc9, 0xd7, 0xc5, 0xd4, 0x0a]),
    'unknown-charset.txt': 'ascii text, unknown label\n',
    'bad-utf8.txt': Buffer.from([0x68, 0x69, 0xff, 0xfe, 0x20, 0xc3, 0x28, 0x0a]),
    'data.json': '{"name":"fanout","text":"ünïcödé €","n":[1,2,3]}\n',
    'style.css': 'body { content: "✓"; }\n',
    'image.svg': '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><title>é</title></svg>\n',
    'empty.txt': '',
    'random.bin': pseudoRandom(65_536, 7),
    'archive.gz': gzipSync(Buffer.from('a gzip file served as a file, not as a Content-Encoding\n')),
    'big.txt': LOREM.repeat(4_000),
    'huge.bin': pseudoRandom(MAX_BODY_BYTES + 300_000, 11),
    'ümlaut.txt': 'the file with an umlaut in its name\n',
    'file with space.txt': 'a space in the name\n',
    'dir/index.html': '<!doctype html><p>directory index</p>\n',
    'gz/page.html': '<!doctype html><p>precompressed page ' + 'x'.repeat(2_000) + '</p>\n',
    'gz/page.html.gz': gzipSync('<!doctype html><p>precompressed page ' + 'x'.repeat(2_000) + '</p>\n'),
    'gz/notes.txt': 'precompressed text, the .gz differs on purpose\n',
    'gz/notes.txt.gz': gzipSync('precompressed text from the .gz file\n'),
    'cookies.txt': 'cookies\n',
    'enc/unknown.txt': 'sent with Content-Encoding: x-custom\n',
    'enc/bad-gzip.txt': 'this is not gzip\n',
    'enc/double-gzip.txt': gzipSync(gzipSync('compressed twice\n')),
    'enc/x-gzip.txt': gzipSync('compressed, labelled x-gzip\n'),
    'latin1-decl.xml': latin1('<?xml version="1.0" encoding="ISO-8859-1"?>\n<p>caf\xe9 \x93quoted\x94</p>\n'),
    'bom-vs-header.txt': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('the BOM says UTF-8 “€”, the header says latin1\n')]),
    'header-beats-meta.html': '<!doctype html><meta charset=windows-1252><p>the header says UTF-8: “€”</p>\n',
    'cookies.cgi': cgi(['Content-Type: text/plain', `Set-Cookie: ${COOKIE_A}`, `Set-Cookie: ${COOKIE_B}`], 'cookies'),
    ...Object.fromEntries(Object.entries(LOCATIONS).map(([name, location]) => [`loc/${name}.cgi`, cgi(['Status: 302 Found', `Location: ${location}`])])),
    'big-headers.txt': 'big headers\n',
    'mid-headers.txt': 'forty kilobytes of headers\n',
  };
  for (const [name, content] of Object.entries(files)) {
    const path = join(root, name);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, content);
  }
}

/** Content-Types per file, the same on nginx and lighttpd. */
const TYPES: Record<string, string> = {
  '/utf8.html': 'text/html; charset=utf-8',
  '/utf8-quoted.txt': 'text/plain; Charset="UTF-8"',
  '/cp1252-latin1.html': 'text/html; charset=iso-8859-1',
  '/cp1252-latin1.txt': 'text/plain; charset=latin1',
  '/cp1252-iso88591-upper.txt': 'text/plain; charset=ISO-8859-1',
  '/cp1252-usascii.txt': 'text/plain; charset=us-ascii',
  '/cp1252.html': 'text/html; charset=windows-1252',
  '/cp1252.txt': 'text/plain; charset=windows-1252',
  '/latin1-only.txt': 'text/plain; charset=iso-8859-1',
  '/sjis.txt': 'text/plain; charset=Shift_JIS',
  '/euc-kr.txt': 'text/plain; charset=euc-kr',
  '/gbk.txt': 'text/plain; charset=gb2312',
  '/koi8r.txt': 'text/plain; charset=koi8-r',
  '/unknown-charset.txt': 'text/plain; charset=x-no-such-charset',
  '/bad-utf8.txt': 'text/plain; charset=utf-8',
  '/data.json': 'application/json',
  '/bom-vs-header.txt': 'text/plain; charset=iso-8859-1',
  '/latin1-decl.xml': 'application/xml',
  '/header-beats-meta.html': 'text/html; charset=utf-8',
};

/**
 * A CGI script (lighttpd runs it with /bin/sh) that sends these header lines as written, bytes included:
 * lighttpd passes a CGI's headers through, where its own url.redirect would percent-encode a Location.
 * `${SERVER_PORT}` is expanded by the shell.
 */
function cgi(headers: string[], body = ''): string {
  const quote = (line: string) => `"${line.replace(/[\\"`]/g, '\\$&').replace(/\$(?!\{SERVER_PORT\})/g, '\\$')}"`;
  return `printf '%s\\r\\n' ${headers.map(quote).join(' ')}\nprintf '\\r\\n%s' ${quote(body)}\n`;
}

/** Location headers sent raw by lighttpd CGI scripts at /loc/NAME.cgi. */
const LOCATIONS = {
  umlaut: '/\u00fcmlaut.txt',
  'umlaut-query': '/utf8.txt?q=\u00fc',
  relative: '../utf8.txt',
  'scheme-relative': '//127.0.0.1:${SERVER_PORT}/utf8.txt',
  backslash: '\\utf8.txt',
  'space-in-query': '/utf8.txt?a b',
  'trailing-space': '/utf8.txt   ',
  empty: '',
  mailto: 'mailto:someone@example.com',
} as const;

const COOKIE_A = 'a=1; Path=/';
const COOKIE_B = 'b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT; Path=/';
/** ~80 KB of response headers: 80 headers of 1,000 bytes (fanout's limit today is 64 KiB). */
const BIG_HEADERS = Array.from({ length: 80 }, (_, i) => [`X-Big-${i}`, 'b'.repeat(1_000)] as const);
/** ~40 KB: under every limit. */
const MID_HEADERS = BIG_HEADERS.slice(0, 40);

function nginxServerBlock(): string {
  const lines = [
    'gzip on; gzip_min_length 20; gzip_types text/plain text/css application/json image/svg+xml;',
    ...Object.entries(TYPES).map(([path, type]) => `location = ${path} { types {} default_type '${type}'; }`),
    'location /gz/ { gzip_static on; }',
    // Content-Encoding set by hand on files that are already encoded (or not: bad-gzip, unknown).
    'location = /enc/unknown.txt { gzip off; add_header Content-Encoding x-custom; }',
    'location = /enc/bad-gzip.txt { gzip off; add_header Content-Encoding gzip; }',
    'location = /enc/double-gzip.txt { gzip off; add_header Content-Encoding "gzip, gzip"; }',
    'location = /enc/x-gzip.txt { gzip off; add_header Content-Encoding x-gzip; }',
    'location = /cookies.txt {',
    `  add_header Set-Cookie "${COOKIE_A}";`,
    `  add_header Set-Cookie "${COOKIE_B}";`,
    '}',
    `location = /big-headers.txt { ${BIG_HEADERS.map(([k, v]) => `add_header ${k} "${v}";`).join(' ')} }`,
    `location = /mid-headers.txt { ${MID_HEADERS.map(([k, v]) => `add_header ${k} "${v}";`).join(' ')} }`,
    // nginx sends the Location of `return` as written: raw UTF-8 bytes here.
    'location = /umlaut-redirect { return 302 /ümlaut.txt; }',
    'location = /umlaut-redirect-encoded { return 302 /%C3%BCmlaut.txt; }',
    'location = /space-redirect { return 302 "/file with space.txt"; }',
    'location = /chain/1 { return 301 /chain/2; }',
    'location = /chain/2 { return 302 /chain/3; }',
    'location = /chain/3 { return 307 /utf8.html; }',
    'location = /loop { return 302 /loop; }',
    'location = /r303 { return 303 /utf8.txt; }',
    'location = /r308 { return 308 /utf8.txt; }',
    // `return 300 X` sends X as the body: the Location is added by hand.
    'location = /r300 { add_header Location /utf8.txt always; return 300 "multiple choices\\n"; }',
    'location = /dotdot-redirect { return 302 /a/b/../../utf8.txt; }',
    'location = /query-redirect { return 302 "/utf8.txt?a=1&b=%20c"; }',
    'location = /fragment-redirect { return 302 /utf8.txt#part; }',
    'location = /to { return 302 $arg_to; }',
    'location = /gone { return 410 "gone\\n"; }',
    'location = /no-content { return 204; }',
    'location = /error { return 500; }',
    'location = /unavailable { return 503; }',
    `location = /inline-json { default_type application/json; return 200 '{"a":"é"}'; }`,
  ];
  return lines.map((l) => `    ${l}`).join('\n');
}

function lighttpdConfig(): string {
  const header = (pairs: readonly (readonly [string, string])[]) => pairs.map(([k, v]) => `"${k}" => "${v}"`).join(', ');
  return [
    ...Object.entries(TYPES).map(([path, type]) => `$HTTP["url"] == "${path}" { mimetype.assign = ( "" => "${type.replace(/"/g, '\\"')}" ) }`),
    // lighttpd's setenv takes one value per header name: two Set-Cookie headers come from a CGI script.
    'server.modules += ( "mod_cgi" )',
    'cgi.assign = ( ".cgi" => "/bin/sh" )',
    `$HTTP["url"] == "/big-headers.txt" { setenv.add-response-header = ( ${header(BIG_HEADERS)} ) }`,
    `$HTTP["url"] == "/mid-headers.txt" { setenv.add-response-header = ( ${header(MID_HEADERS)} ) }`,
    'url.redirect-code = 302',
    'url.redirect = (',
    '  "^/umlaut-redirect$" => "/ümlaut.txt",',
    '  "^/chain/1$" => "/chain/2",',
    '  "^/chain/2$" => "/utf8.html",',
    '  "^/loop$" => "/loop",',
    '  "^/to\\?to=(.*)$" => "$1",',
    ')',
  ].join('\n');
}

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
      '/html', '/robots.txt', '/xml', '/encoding/utf8', '/deny', '/bytes/1024?seed=3', '/bytes/0', '/stream-bytes/5000?seed=4&chunk_size=256',
      '/range/1000', '/drip?numbytes=10&duration=0.5&delay=0', '/base64/SFRUUEJJTiBpcyBhd2Vzb21l', '/image/png', '/image/svg',
      '/image/jpeg', '/image/webp', '/links/5/2', '/response-headers?Content-Type=text%2Fplain%3B+charset%3Dutf-8&X-Test=1',
      '/response-headers?Content-Type=text%2Fhtml%3B+charset%3Dshift_jis', '/redirect-to?url=%2Fhtml', '/redirect-to?url=%2Fhtml&status_code=307',
      '/redirect-to?url=%2Fhtml&status_code=308', '/redirect-to?url={nginx}%2Futf8.txt', '/redirect-to?url={lighttpd}%2Fdir',
      // httpbin (werkzeug) sends this Location UTF-8-encoded twice (/%C3%83%C2%BCmlaut): both clients follow it to a 404.
      '/redirect-to?url=%2F%C3%BCmlaut', '/basic-auth/user/passwd', '/hidden-basic-auth/user/passwd', '/bearer', '/missing-route',
    ].map((path): Case => ({ server, path })),
    ...['/delay/1', '/cache', '/etag/abc'].map((path): Case => ({ server, path, differs: 'echo' })),
    { server, path: '/uuid', differs: 'random' },
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
// The two clients.

interface CurlResult {
  exitcode: number;
  errormsg: string | null;
  /** 0 when no response came. */
  status: number;
  finalUrl: string;
  redirects: number;
  contentType: string | null;
  /** Headers of the last response, lower-cased names, each a list of values. */
  headers: Record<string, string[]>;
  /** The body, content-decoded (--compressed). */
  body: Buffer;
}

interface FanoutRecord {
  index: number;
  url: string;
  ok: boolean;
  status: number | null;
  finalUrl: string | null;
  redirects: number;
  headers: Record<string, string | string[]>;
  bytes: number;
  truncated: boolean;
  body?: string;
  bodyEncoding?: 'utf8' | 'base64';
  sha256?: string | null;
  error: { code: string; message: string } | null;
}

function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** One curl process fetching the whole list in parallel, each body to its own file. */
async function curlAll(urls: string[], dir: string): Promise<CurlResult[]> {
  const curl = requireBinary('curl', 'curl');
  mkdirSync(join(dir, 'curl'));
  const quote = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const config = urls.map((url, i) => `url = ${quote(url)}\noutput = ${quote(join(dir, 'curl', String(i)))}\n`).join('');
  writeFileSync(join(dir, 'curl.config'), config);
  const { stdout } = await run(curl, [
    '--silent', '--noproxy', '*', '--parallel', '--parallel-max', '16', '--location', '--max-redirs', String(MAX_REDIRECTS), '--compressed',
    '--max-time', String(TIMEOUT_MS / 1000), '--write-out', '\u0001%{json}\u0002%{header_json}\u0003', '--config', join(dir, 'curl.config'),
  ]);
  const results: CurlResult[] = [];
  for (const m of stdout.matchAll(/\u0001(.*?)\u0002(.*?)\u0003/gs)) {
    const info = JSON.parse(m[1]!) as Record<string, unknown>;
    const headers = JSON.parse(m[2]!) as Record<string, string[]>;
    const i = info.urlnum as number;
    const file = join(dir, 'curl', String(i));
    results[i] = {
      exitcode: info.exitcode as number,
      errormsg: (info.errormsg as string | null) ?? null,
      status: info.http_code as number,
      finalUrl: info.url_effective as string,
      redirects: info.num_redirects as number,
      contentType: (info.content_type as string | null) ?? null,
      headers,
      body: existsSync(file) ? readFileSync(file) : Buffer.alloc(0),
    };
  }
  return results;
}

/** Loopback servers are reached directly, whatever proxy the environment names (curl: --noproxy '*'). */
const NO_PROXY_ENV = { HTTP_PROXY: '', HTTPS_PROXY: '', ALL_PROXY: '', http_proxy: '', https_proxy: '', all_proxy: '', NO_PROXY: '*', no_proxy: '*' };

async function fanoutAll(urls: string[], dir: string): Promise<FanoutRecord[]> {
  writeFileSync(join(dir, 'list.txt'), urls.join('\n') + '\n');
  const out = join(dir, 'records.ndjson');
  const result = await fanout([
    'fetch', join(dir, 'list.txt'), '--out', out, '--no-progress', '--data-dir', join(dir, 'data'), '--workers', '1',
    '--concurrency', '16', '--retries', '0', '--timeout-ms', String(TIMEOUT_MS), '--max-redirects', String(MAX_REDIRECTS),
  ], { env: NO_PROXY_ENV });
  if (result.code !== 0) throw new Error(`fanout fetch exited with ${result.code}: ${result.stderr}`);
  return readFileSync(out, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as FanoutRecord);
}

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
    writeFixtures(root);
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
    [curlResults, records] = await Promise.all([curlAll(urls, dir), fanoutAll(urls, dir)]);
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
