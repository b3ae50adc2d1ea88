/**
 * How a kept body goes into a record: text decoded to UTF-8 by its charset, anything else base64.
 */

import { TextDecoder } from 'node:util';

const TEXTUAL =
  /^(text\/|application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded|x-ndjson|ld\+json|[\w.+-]+\+(json|xml))|image\/svg\+xml)/i;

/** The charset parameter of a Content-Type, if any. */
export function charsetOf(contentType: string | undefined): string | undefined {
  return contentType ? /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType)?.[1] : undefined;
}

export interface EncodedBody {
  body: string;
  bodyEncoding: 'utf8' | 'base64';
}

function decoderFor(label: string): TextDecoder | undefined {
  try {
    // fatal: bytes that are not valid in the declared charset fall back to base64 rather than U+FFFD.
    return new TextDecoder(label, { fatal: true });
  } catch {
    return undefined; // a charset TextDecoder does not know
  }
}

/**
 * Encodes body bytes for the record.
 *
 * @param truncated when the body was cut, a multi-byte character split at the cut is dropped
 *   instead of making the whole body undecodable.
 * @example
 * encodeBody(Buffer.from('héllo', 'latin1'), 'text/plain; charset=iso-8859-1', false)
 * // { body: 'héllo', bodyEncoding: 'utf8' }
 */
export function encodeBody(data: Buffer, contentType: string | undefined, truncated: boolean): EncodedBody {
  const charset = charsetOf(contentType);
  const textual = contentType === undefined || contentType.trim() === '' || TEXTUAL.test(contentType.trim()) || charset !== undefined;
  if (textual) {
    const decoder = decoderFor(charset ?? 'utf-8');
    if (decoder) {
      try {
        return { body: decoder.decode(data, { stream: truncated }), bodyEncoding: 'utf8' };
      } catch {
        // not valid in that charset: base64 keeps the bytes exact
      }
    }
  }
  return { body: data.toString('base64'), bodyEncoding: 'base64' };
}
