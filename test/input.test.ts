import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EmptyInputError, InputError } from '../functions/core/errors.ts';
import { checkUrl, openInput, type IndexedItem } from '../functions/core/input.ts';

async function parse(text: string, format?: 'auto' | 'text' | 'ndjson' | 'json') {
  const input = await openInput(Readable.from([text]), format);
  const items: IndexedItem[] = [];
  for await (const item of input.items) items.push(item);
  return { format: input.format, options: input.options, items };
}

async function error(text: string, format?: 'auto' | 'text' | 'ndjson' | 'json'): Promise<InputError> {
  try {
    await parse(text, format);
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error('expected an InputError');
}

describe('text input', () => {
  it('indexes URLs, skipping blank lines and # comments (which get no index)', async () => {
    const { format, items } = await parse('# list\n\nhttp://a.test/1\n  https://b.test/2  \r\n#x\nhttp://a.test/3\n');
    expect(format).toBe('text');
    expect(items).toEqual([
      { index: 0, url: 'http://a.test/1' },
      { index: 1, url: 'https://b.test/2' },
      { index: 2, url: 'http://a.test/3' },
    ]);
  });

  it('names the line of a non-http scheme, counting skipped lines', async () => {
    const e = await error('# c\nhttp://ok.test/\n\nftp://files.test/x\n');
    expect(e.line).toBe(4);
    expect(e.message).toBe('line 4: unsupported scheme "ftp:" in "ftp://files.test/x": only http and https URLs are fetched');
  });

  it('names the line of something that is not a URL', async () => {
    const e = await error('http://ok.test/\nexample.com/no-scheme\n');
    expect(e.message).toMatch(/^line 2: not a valid URL: "example.com\/no-scheme"/);
  });

  it('refuses absurdly long URLs with their line', async () => {
    const e = await error(`http://a.test/${'x'.repeat(70_000)}\n`);
    expect(e.message).toMatch(/^line 1: URL longer than 65536 characters/);
  });

  it('accepts a long but reasonable URL', async () => {
    const { items } = await parse(`http://a.test/${'x'.repeat(10_000)}`);
    expect(items[0]!.url).toHaveLength(14 + 10_000);
  });

  it('reports an input without URLs', async () => {
    await expect(parse('# nothing\n\n')).rejects.toBeInstanceOf(EmptyInputError);
  });

  it('streams: a large input is read line by line', async () => {
    const lines = async function* () {
      for (let i = 0; i < 100_000; i++) yield `http://h${i % 10}.test/${i}\n`;
    };
    const input = await openInput(Readable.from(lines()));
    let count = 0;
    let last: IndexedItem | undefined;
    for await (const item of input.items) {
      count++;
      last = item;
    }
    expect(count).toBe(100_000);
    expect(last).toEqual({ index: 99_999, url: 'http://h9.test/99999' });
  });
});

describe('NDJSON input', () => {
  it('reads items with per-item overrides', async () => {
    const { format, items } = await parse(
      '{"url":"http://a.test/","id":"a"}\n\n{"url":"http://b.test/","method":"post","headers":{"X-K":"v"},"body":"b","id":7}\n',
    );
    expect(format).toBe('ndjson');
    expect(items).toEqual([
      { index: 0, url: 'http://a.test/', id: 'a' },
      { index: 1, url: 'http://b.test/', method: 'POST', headers: { 'X-K': 'v' }, body: 'b', id: 7 },
    ]);
  });

  it('names the line of broken JSON', async () => {
    const e = await error('{"url":"http://a.test/"}\n{"url": http://b}\n');
    expect(e.message).toMatch(/^line 2: not valid JSON/);
  });

  it('names the line and field of an unknown field or a bad value', async () => {
    expect((await error('{"url":"http://a.test/"}\n{"url":"http://b.test/","colour":1}\n')).message).toBe(
      'line 2: unknown field "colour"',
    );
    expect((await error('{"url":"http://a.test/","headers":{"x":"a\\r\\nInjected: 1"}}\n')).message).toMatch(
      /^line 1: "headers.x": header values may not contain CR, LF, NUL or other control characters/,
    );
    expect((await error('{"url":"gopher://a.test/"}\n')).message).toMatch(/^line 1: unsupported scheme "gopher:"/);
  });
});

describe('JSON document input', () => {
  it('reads {"urls": [...], "options": {...}} with strings and objects', async () => {
    const { format, options, items } = await parse(
      JSON.stringify({ urls: ['http://a.test/', { url: 'http://b.test/', id: 'b' }], options: { concurrency: 3 } }, null, 2),
    );
    expect(format).toBe('json');
    expect(options).toEqual({ concurrency: 3 });
    expect(items).toEqual([
      { index: 0, url: 'http://a.test/' },
      { index: 1, url: 'http://b.test/', id: 'b' },
    ]);
  });

  it('accepts a bare array', async () => {
    const { items } = await parse('["http://a.test/", "http://b.test/"]');
    expect(items.map((i) => i.url)).toEqual(['http://a.test/', 'http://b.test/']);
  });

  it('names the field of a bad entry', async () => {
    const e = await error('{"urls": ["http://a.test/", "mailto:x@y.test"]}');
    expect(e.field).toBe('urls[1]');
    expect(e.message).toMatch(/unsupported scheme "mailto:"/);
  });

  it('names the line of malformed JSON', async () => {
    const e = await error('{"urls": [\n  "http://a.test/",\n  "http://b.test/"\n  "http://c.test/"\n]}');
    expect(e.line).toBe(4);
  });

  it('places a document cut short at its last line, not at a line after it', async () => {
    // One line without a newline: the reader's own newline made this "line 2, column 1".
    const cut = await error('{"urls": ["http://a.test/", "http://b.test/"');
    expect(cut.line).toBe(1);
    expect(cut.message).toBe('line 1: not valid JSON: it ends early (close bracket expected) at column 45');
    const cutNdjson = await error('{"url": "http://a.test/"}\n{"url": "http://b.test/"\n\n');
    expect(cutNdjson.message).toBe('line 2: not valid JSON: it ends early (close brace expected) at column 25');
    // An error inside the document is still placed where it is.
    expect((await error('{"urls": ["http://a.test/",, "http://b.test/"]}')).message).toBe('line 1: not valid JSON: value expected at column 28');
    // Whitespace JSON does not allow after a complete document is that error, not an early end.
    expect((await error('{"urls": [\n"http://a.test/"\n]}\n\u00a0\n')).message).toBe('line 4: not valid JSON: invalid symbol at column 1');
  });

  it('counts the columns of indented lines from the line as written', async () => {
    expect((await error('   ["http://a.test/"')).message).toBe('line 1: not valid JSON: it ends early (close bracket expected) at column 21');
    expect((await error('{"url": "http://a.test/"}\n    {"url": "http://b.test/",}\n')).message).toBe('line 2: not valid JSON: property name expected at column 30');
    expect((await error('\uFEFF  {"url": "http://a.test/"')).message).toBe('line 1: not valid JSON: it ends early (close brace expected) at column 27');
  });

  it('refuses unknown top-level fields', async () => {
    expect((await error('{"urls": ["http://a.test/"], "optoins": {}}')).message).toMatch(/unknown field "optoins"/);
  });

  it('respects an explicit format', async () => {
    const e = await error('{"url":"http://a.test/"}', 'text');
    expect(e.message).toMatch(/^line 1: not a valid URL/);
  });
});

describe('input size limits (issue 14 item 1)', () => {
  /** A source of `total` bytes in 64 KiB pieces that counts what was read from it. */
  function counted(total: number, piece: (i: number) => string) {
    const state = { read: 0 };
    const source = (async function* () {
      for (let i = 0; state.read < total; i++) {
        const text = piece(i);
        state.read += text.length;
        yield Buffer.from(text);
      }
    })();
    return { state, source };
  }

  it('refuses a 20 MB line with no newline after reading little more than the limit', async () => {
    const { state, source } = counted(20 * 1024 * 1024, (i) => (i === 0 ? 'http://a.test/' : '') + 'x'.repeat(64 * 1024));
    const e = await openInput(source)
      .then(async (input) => {
        for await (const _ of input.items);
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).line).toBe(1);
    expect((e as InputError).message).toMatch(/^line 1: line longer than 1048576 bytes/);
    expect(state.read).toBeLessThan(1.2 * 1024 * 1024);
  });

  it('names the line of a too-long line after good ones, in text and NDJSON', async () => {
    const long = 'x'.repeat(1024 * 1024 + 10);
    expect((await error(`http://a.test/\n# c\nhttp://b.test/${long}\nhttp://c.test/\n`)).line).toBe(3);
    expect((await error(`{"url":"http://a.test/"}\n{"url":"http://b.test/","body":"${long}"}\n`)).line).toBe(2);
    // a first NDJSON line that long is said to be too long too, not a broken document
    expect((await error(`{"url":"http://b.test/","body":"${long}"}\n{"url":"http://a.test/"}\n`)).message).toMatch(/^line 1: line longer than/);
    expect((await error(`http://b.test/${long}`, 'ndjson')).line).toBe(1);
  });

  it('accepts a line just under the limit, and a long one-line JSON document', async () => {
    const { items } = await parse(`{"url":"http://a.test/","body":"${'y'.repeat(1024 * 1024 - 100)}"}\n`);
    expect(items[0]!.body).toHaveLength(1024 * 1024 - 100);
    const urls = Array.from({ length: 60_000 }, (_, i) => `http://a.test/${i}`);
    const doc = JSON.stringify({ urls });
    expect(doc.length).toBeGreaterThan(1024 * 1024);
    const parsed = await parse(doc);
    expect(parsed.items).toHaveLength(60_000);
    expect(parsed.format).toBe('json');
  });

  it('refuses a JSON document above 16 MiB, telling the user to send NDJSON, without reading it all', async () => {
    const { state, source } = counted(40 * 1024 * 1024, (i) => (i === 0 ? '{"urls": [\n' : '"http://a.test/' + 'z'.repeat(64 * 1024) + '",\n'));
    const e = await openInput(source).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).field).toBe('format');
    expect((e as InputError).message).toMatch(/at most 16777216 bytes .*NDJSON/);
    expect(state.read).toBeLessThan(17 * 1024 * 1024);
  });
});

describe('items that could never be fetched fail the submission (issue 14 item 9)', () => {
  it('names the line of userinfo that is not valid percent-encoding', async () => {
    const e = await error('http://ok.test/\nhttp://%zz@host.test/\n');
    expect(e.line).toBe(2);
    expect(e.message).toMatch(/user name or password .* not valid percent-encoding/);
    expect((await error('{"url":"http://u:%E0%A4%A@host.test/"}\n')).line).toBe(1);
    expect((await parse('http://user%40x:p%20w@host.test/\n')).items).toHaveLength(1);
  });

  it('names the line and field of an unsendable header or a wrong content-length', async () => {
    const host = await error('{"url":"http://a.test/"}\n{"url":"http://b.test/","headers":{"Host":"evil.test"}}\n');
    expect(host.line).toBe(2);
    expect(host.field).toBe('headers.Host');
    const te = await error('{"urls":[{"url":"http://a.test/","headers":{"transfer-encoding":"chunked"}}]}');
    expect(te.field).toBe('urls[0].headers.transfer-encoding');
    const length = await error('{"url":"http://a.test/","method":"POST","body":"abc","headers":{"content-length":"10"}}\n');
    expect(length.line).toBe(1);
    expect(length.field).toBe('headers.content-length');
    const ok = await parse('{"url":"http://a.test/","method":"POST","body":"abc","headers":{"content-length":"3"}}\n');
    expect(ok.items).toHaveLength(1);
  });
});

describe('whitespace inside a URL (issue 12 item 4)', () => {
  it('refuses junk after a URL on a text line, naming the line and saying where notes go', async () => {
    const e = await error('# list\nhttp://ok.test/\n\nhttp://host.test/a some note\n');
    expect(e.line).toBe(4);
    expect(e.message).toBe('line 4: whitespace inside the URL "http://host.test/a some note"; put notes on their own line starting with #');
  });

  it('refuses a tab or a non-breaking space inside, but still trims around the URL', async () => {
    expect((await error('http://a.test/x\ty\n')).line).toBe(1);
    expect((await error('http://a.test/\nhttp://a.test/x\u00a0y\n')).line).toBe(2);
    const { items } = await parse(' \thttp://a.test/x \t\r\n');
    expect(items).toEqual([{ index: 0, url: 'http://a.test/x' }]);
  });

  it('refuses a URL field with a space in NDJSON and JSON, naming the field', async () => {
    const nd = await error('{"url":"http://a.test/"}\n{"url":"http://a.test/a b"}\n');
    expect(nd.line).toBe(2);
    expect(nd.field).toBe('url');
    expect(nd.message).toMatch(/whitespace inside the URL .*percent-encode spaces as %20/);
    const doc = await error('{"urls":["http://a.test/","http://a.test/a b"]}');
    expect(doc.field).toBe('urls[1]');
  });

  it('keeps percent-encoded spaces, which are part of the URL', async () => {
    const { items } = await parse('http://a.test/a%20b\n');
    expect(items[0]!.url).toBe('http://a.test/a%20b');
  });

  it('accepts an NDJSON item with fields (an object of strings) and refuses other values there', async () => {
    const { items } = await parse('{"url":"http://a.test/","fields":{"note":"x","team":"y"}}\n');
    expect(items[0]!.fields).toEqual({ note: 'x', team: 'y' });
    expect((await error('{"url":"http://a.test/","fields":{"n":1}}\n')).field).toBe('fields.n');
  });
});

describe('checkUrl: the quick path (URL.canParse) accepts exactly what the full parse accepts', () => {
  /** The check as it was before the quick path: a full parse, the scheme, the credentials. */
  function fullCheck(url: string): boolean {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return false;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return false;
    try {
      decodeURIComponent(parsed.username);
      decodeURIComponent(parsed.password);
    } catch {
      return false;
    }
    return true;
  }
  const accepts = (url: string): boolean => {
    try {
      return checkUrl(url) === url;
    } catch (error) {
      if (error instanceof InputError) return false;
      throw error;
    }
  };
  const urls = [
    'http://example.com/',
    'HTTPS://EXAMPLE.COM/a?b#c',
    'HtTp://x',
    'http:/x',
    'http:x',
    'http:///x',
    'http:\\\\x\\y',
    'http://',
    'https://[::1]:8080/',
    'http://[::1/',
    'http://1.2.3.4.5/',
    'http://999.1.1.1/',
    'http://0x7f.1/',
    'http://ex%00ample/',
    'http://ex%41mple/',
    'http://xn--/',
    'http://a:b@c/',
    'http://%zz@x/',
    'http://u:%E0%A4%A@x/',
    'http://x/%zz',
    'http://x:99999/',
    'http://x:8080/',
    'https://x:/',
    'http://a_b.example/',
    'http://例え.jp/パス',
    'http://x/?q=@',
    'http://x#@',
    'httpx://x/',
    'https:x',
    'ftp://x/',
    'javascript:alert(1)',
    'mailto:a@b',
    'http://x\u0000y/',
    'http://x<y/',
    'http://x^y/',
  ];
  // Mojibake: U+0080 is not allowed in a host, but its UTF-8 reading (C3 80) is a letter.
  urls.push('http://\u00c3\u0080/', 'http://caf\u00e9.test/', 'https://\u00e9', 'http://x/\u00ff', 'http://\u00c3\u00a9.test/');
  for (const url of urls) {
    it(JSON.stringify(url), () => {
      expect(accepts(url)).toBe(fullCheck(url));
    });
  }

  it('also once URL.canParse is optimised (a long list): Node 20 then reads one-byte strings as UTF-8', () => {
    for (let i = 0; i < 50_000; i++) checkUrl(`http://a.test/${i}`);
    for (const url of urls) expect(accepts(url), JSON.stringify(url)).toBe(fullCheck(url));
    expect(accepts('http://\u00c3\u0080/')).toBe(false);
  });
});
