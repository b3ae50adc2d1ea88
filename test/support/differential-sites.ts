/**
 * The sites of the differential test (test/differential.test.ts): the files nginx and lighttpd serve from
 * one folder, their Content-Types, and each server's config (redirects, raw Locations, big headers,
 * Set-Cookie twice, hand-set Content-Encodings). Bytes that matter are written here byte by byte.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

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

/**
 * Writes the files both static servers serve (`hugeSize`: the size of /huge.bin, over fanout's body cut).
 *
 * @example
 * writeFixtures(root, 1_348_576);
 */
export function writeFixtures(root: string, hugeSize: number): void {
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
    'huge.bin': pseudoRandom(hugeSize, 11),
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
export const TYPES: Record<string, string> = {
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
export const LOCATIONS = {
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

export const COOKIE_A = 'a=1; Path=/';
export const COOKIE_B = 'b=2; Expires=Wed, 21 Oct 2035 07:28:00 GMT; Path=/';
/** ~80 KB of response headers: 80 headers of 1,000 bytes (fanout's limit today is 64 KiB). */
export const BIG_HEADERS = Array.from({ length: 80 }, (_, i) => [`X-Big-${i}`, 'b'.repeat(1_000)] as const);
/** ~40 KB: under every limit. */
export const MID_HEADERS = BIG_HEADERS.slice(0, 40);

/** The directives of nginx's `server {}` block: per-file types, redirects, headers, encodings. */
export function nginxServerBlock(): string {
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

/** lighttpd's extra config: per-file types, redirects, headers, CGI. */
export function lighttpdConfig(): string {
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
