/**
 * The reference the differential test holds fanout to: a body's text as a browser decodes it, by the
 * WHATWG Encoding Standard (labels, windows-1252 for `iso-8859-1`...) and the HTML encoding sniffing
 * rules (BOM, then the Content-Type charset, then `<meta charset>` in the first 1024 bytes of HTML or
 * the `<?xml encoding?>` declaration of XML),
 * built on cheerio's and jsdom's libraries (encoding-sniffer, whatwg-encoding over iconv-lite), not on the
 * libraries fanout's own decoder uses, so the two implementations check each other.
 */
import { getEncoding } from 'encoding-sniffer';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const whatwgEncoding = require('whatwg-encoding') as {
  labelToName(label: string): string | null;
  getBOMEncoding(bytes: Uint8Array): string | null;
  decode(bytes: Uint8Array, encodingName: string): string;
};

/** Media types a browser shows as text (fanout's body-text.ts keeps the same ones as UTF-8 text). */
const TEXTUAL = /^(text\/|application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded|x-ndjson|ld\+json|[\w.+-]+\+(json|xml))|image\/svg\+xml)/i;

export function charsetLabel(contentType: string | null | undefined): string | undefined {
  return contentType ? /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType)?.[1] : undefined;
}

/** True when a response of this Content-Type is text (no Content-Type counts as text, as in fanout). */
export function isTextual(contentType: string | null | undefined): boolean {
  if (!contentType || contentType.trim() === '') return true;
  return TEXTUAL.test(contentType.trim()) || charsetLabel(contentType) !== undefined;
}

/** The encoding a browser picks. With nothing declared, UTF-8 (a browser's locale default would be windows-1252). */
export function browserEncoding(bytes: Uint8Array, contentType: string | null | undefined): string {
  const label = charsetLabel(contentType);
  // HTML: the <meta> prescan; XML: the <?xml encoding=...?> declaration (encoding-sniffer reads both).
  if (/^\s*(text\/html|text\/xml|application\/xml|[\w.+-]+\/[\w.-]+\+xml)\b/i.test(contentType ?? '')) {
    return getEncoding(bytes, { ...(label ? { transportLayerEncodingLabel: label } : {}), defaultEncoding: 'UTF-8' });
  }
  return whatwgEncoding.getBOMEncoding(bytes) ?? (label ? whatwgEncoding.labelToName(label) : null) ?? 'UTF-8';
}

/**
 * The text a browser shows for these bytes (invalid sequences become U+FFFD, a BOM is dropped).
 *
 * @example
 * browserText(Buffer.from([0x93, 0x68, 0x69, 0x94]), 'text/plain; charset=iso-8859-1') // '“hi”'
 */
export function browserText(bytes: Uint8Array, contentType: string | null | undefined): string {
  return whatwgEncoding.decode(bytes, browserEncoding(bytes, contentType));
}
