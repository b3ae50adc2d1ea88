/**
 * How a kept body goes into a record: text decoded to UTF-8 as browsers decode it, anything else
 * base64. The encoding is found as the HTML and Encoding Standards say (html-encoding-sniffer):
 * a byte order mark first, then the Content-Type charset, then, for HTML, a `<meta charset>` or
 * `<meta http-equiv="content-type">` in the first 1024 bytes; else UTF-8. Every label of the
 * Encoding Standard maps as it does there (iso-8859-1, latin1 and us-ascii are windows-1252), which
 * Node's own TextDecoder does not do: the decoders come from @exodus/bytes.
 */
import { TextDecoder } from '@exodus/bytes/encoding.js';
import sniffEncoding from 'html-encoding-sniffer';

const TEXTUAL =
  /^(text\/|application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded|x-ndjson|ld\+json|xhtml\+xml|[\w.+-]+\+(json|xml))|image\/svg\+xml)/i;
const HTML = /^text\/html\b/i;

type Decoder = InstanceType<typeof TextDecoder>;

/** The charset parameter of a Content-Type, if any. */
export function charsetOf(contentType: string | undefined): string | undefined {
  return contentType ? /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType)?.[1] : undefined;
}

export interface EncodedBody {
  body: string;
  bodyEncoding: 'utf8' | 'base64';
}

/**
 * The Encoding Standard name a text body decodes with: BOM, else the header's charset (a label the
 * standard does not know is ignored, as browsers do), else for HTML (or no type) a `<meta>` in the
 * first 1024 bytes, else UTF-8.
 *
 * @example
 * textEncodingOf(Buffer.from('<meta charset="latin1">'), 'text/html') // 'windows-1252'
 */
export function textEncodingOf(data: Uint8Array, contentType: string | undefined): string {
  const type = contentType?.trim() ?? '';
  const html = type === '' || HTML.test(type);
  return sniffEncoding(data, { xml: !html, transportLayerEncodingLabel: charsetOf(type), defaultEncoding: 'UTF-8' });
}

/** Fatal decoders by encoding name, reused for whole bodies (a decode without `stream` starts afresh). */
const decoders = new Map<string, Decoder | null>();

function decoderFor(encoding: string, fresh: boolean): Decoder | null {
  const make = () => {
    try {
      // fatal: bytes that are not valid in the encoding fall back to base64 rather than U+FFFD.
      return new TextDecoder(encoding, { fatal: true });
    } catch {
      return null; // `replacement` (iso-2022-kr and such): no text to be had, keep the bytes
    }
  };
  if (fresh) return make();
  let decoder = decoders.get(encoding);
  if (decoder === undefined) decoders.set(encoding, (decoder = make()));
  return decoder;
}

/**
 * Encodes body bytes for the record.
 *
 * @param truncated when the body was cut, a multi-byte character split at the cut is dropped
 *   instead of making the whole body undecodable.
 * @example
 * encodeBody(Buffer.from([0x93, 0x68, 0x69, 0x94]), 'text/plain; charset=iso-8859-1', false)
 * // { body: '“hi”', bodyEncoding: 'utf8' }
 */
export function encodeBody(data: Buffer, contentType: string | undefined, truncated: boolean): EncodedBody {
  const type = contentType?.trim() ?? '';
  if (type === '' || TEXTUAL.test(type) || charsetOf(type) !== undefined) {
    const decoder = decoderFor(textEncodingOf(data, type), truncated);
    if (decoder) {
      try {
        return { body: decoder.decode(data, { stream: truncated }), bodyEncoding: 'utf8' };
      } catch {
        // not valid in that encoding: base64 keeps the bytes exact
      }
    }
  }
  return { body: data.toString('base64'), bodyEncoding: 'base64' };
}
