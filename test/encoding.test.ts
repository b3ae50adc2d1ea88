/**
 * Text as browsers decode it (issue 12 item 1): Encoding Standard labels and mappings, BOM, the
 * Content-Type charset, `<meta>` in the first 1024 bytes of HTML; and a raw UTF-8 Location header
 * followed as curl follows it.
 */
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBody, textEncodingOf } from '../functions/core/engine/body-text.ts';
import { openFetcher } from './support/engine.ts';
import { startRawOrigin, type RawOrigin } from './support/raw-origin.ts';

/** “hi” €, in windows-1252 bytes: 0x80-0x9F are where it differs from ISO-8859-1's C1 controls. */
const CP1252 = Buffer.from([0x93, 0x68, 0x69, 0x94, 0x20, 0x80]);
/** "Привет" in windows-1251. */
const CP1251 = Buffer.from([0xcf, 0xf0, 0xe8, 0xe2, 0xe5, 0xf2]);

let engine: ReturnType<typeof openFetcher>;
let raw: RawOrigin;

function respond(socket: Socket, head: string, body: Buffer | string = ''): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  // latin1: each char of `head` is one byte, so raw non-ASCII header bytes can be sent.
  socket.write(Buffer.from(`${head}\r\ncontent-length: ${bytes.length}\r\n\r\n`, 'latin1'));
  socket.write(bytes);
}

beforeAll(async () => {
  engine = openFetcher();
  raw = await startRawOrigin((socket, req) => {
    const [path, query = ''] = req.path.split('?');
    const q = new URLSearchParams(query);
    switch (path) {
      case '/cp1252':
        return respond(socket, `HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=${q.get('label')}`, CP1252);
      case '/meta':
        return respond(
          socket,
          'HTTP/1.1 200 OK\r\ncontent-type: text/html',
          Buffer.concat([Buffer.from('<!doctype html><html><head><meta charset="windows-1251"><title>'), CP1251, Buffer.from('</title>')]),
        );
      case '/utf8-location':
        // The bytes of "/ümlaut.txt" in UTF-8, raw in the header, as some servers send them.
        return respond(socket, `HTTP/1.1 302 Found\r\nlocation: ${Buffer.from('/ümlaut.txt', 'utf8').toString('latin1')}`);
      case '/latin1-location':
        return respond(socket, 'HTTP/1.1 302 Found\r\nlocation: /\xfcmlaut.txt');
      case '/%C3%BCmlaut.txt':
        return respond(socket, 'HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8', 'found ü');
      default:
        return respond(socket, 'HTTP/1.1 404 Not Found\r\ncontent-type: text/plain', `no ${req.path}`);
    }
  });
});

afterAll(async () => {
  await engine.close();
  await raw.close();
});

describe('charset labels as the Encoding Standard maps them', () => {
  for (const label of ['iso-8859-1', 'ISO-8859-1', 'latin1', 'us-ascii', 'windows-1252', 'cp1252', '"iso-8859-1"']) {
    it(`decodes 0x80-0x9F labelled ${label} as windows-1252 (curly quotes, euro sign)`, async () => {
      const { body, contentType } = await engine.fetch(`${raw.url}/cp1252?label=${encodeURIComponent(label)}`);
      expect(encodeBody(body!, contentType, false)).toEqual({ body: '\u201chi\u201d \u20ac', bodyEncoding: 'utf8' });
    });
  }

  it('maps other labels: windows-1251, shift_jis, euc-kr, gbk', () => {
    expect(encodeBody(CP1251, 'text/plain; charset=cp1251', false).body).toBe('Привет');
    expect(encodeBody(Buffer.from([0x82, 0xa0]), 'text/plain; charset=shift_jis', false).body).toBe('あ');
    expect(encodeBody(Buffer.from([0xb0, 0xa1]), 'text/plain; charset=euc-kr', false).body).toBe('가');
    expect(encodeBody(Buffer.from([0xc4, 0xe3]), 'text/plain; charset=gbk', false).body).toBe('你');
  });

  it('ignores a label the standard does not know, as browsers do, and tries UTF-8', () => {
    expect(encodeBody(Buffer.from('héllo'), 'text/plain; charset=no-such-charset', false)).toEqual({ body: 'héllo', bodyEncoding: 'utf8' });
  });

  it('keeps bytes of the `replacement` encodings (iso-2022-kr) as base64', () => {
    expect(encodeBody(Buffer.from('hi'), 'text/plain; charset=iso-2022-kr', false).bodyEncoding).toBe('base64');
  });
});

describe('BOM and <meta>', () => {
  it('a BOM wins over the header, as in browsers', () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('hé', 'utf16le')]);
    expect(encodeBody(utf16, 'text/plain; charset=iso-8859-1', false)).toEqual({ body: 'hé', bodyEncoding: 'utf8' });
    const utf8 = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('hé')]);
    expect(encodeBody(utf8, 'text/plain', false)).toEqual({ body: 'hé', bodyEncoding: 'utf8' });
  });

  it('reads <meta charset> in HTML without a header charset', async () => {
    const { body, contentType } = await engine.fetch(`${raw.url}/meta`);
    expect(encodeBody(body!, contentType, false).body).toContain('<title>Привет</title>');
  });

  it('reads <meta http-equiv="content-type">, and only in the first 1024 bytes', () => {
    const page = (pad: number) =>
      Buffer.concat([Buffer.from(`<!--${'x'.repeat(pad)}--><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">`), CP1251]);
    expect(textEncodingOf(page(10), 'text/html')).toBe('windows-1251');
    expect(encodeBody(page(10), 'text/html', false).body).toMatch(/Привет$/);
    expect(textEncodingOf(page(2000), 'text/html')).toBe('UTF-8');
  });

  it('the header charset wins over <meta>; <meta> is not read outside HTML', () => {
    const page = Buffer.from('<meta charset="windows-1251">hi');
    expect(textEncodingOf(page, 'text/html; charset=utf-8')).toBe('UTF-8');
    expect(textEncodingOf(page, 'text/plain')).toBe('UTF-8');
  });
});

describe('a raw non-ASCII Location header', () => {
  it('is read as UTF-8 bytes, as curl does: /ümlaut.txt goes to /%C3%BCmlaut.txt', async () => {
    const { record, body } = await engine.fetch(`${raw.url}/utf8-location`);
    expect(record).toMatchObject({ ok: true, status: 200, redirects: 1, finalUrl: `${raw.url}/%C3%BCmlaut.txt` });
    expect(body!.toString()).toBe('found ü');
  });

  it('shows the header as text in the record', async () => {
    const { record } = await engine.fetch(`${raw.url}/utf8-location`, { maxRedirects: 0 });
    expect(record.headers.location).toBe('/ümlaut.txt');
  });

  it('percent-encodes bytes that are not UTF-8 as they are (curl does too)', async () => {
    const { record } = await engine.fetch(`${raw.url}/latin1-location`);
    expect(record).toMatchObject({ status: 404, redirects: 1, finalUrl: `${raw.url}/%FCmlaut.txt` });
  });
});
