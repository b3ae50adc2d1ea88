/**
 * Input parsing: a URL list as plain text, NDJSON or a JSON document, read as a stream so a
 * ten-million-line file is never held whole. Every error names its line (or, in a JSON document,
 * its field), and only http: and https: URLs get through: a typo must fail the submission, not
 * quietly become a failed record.
 */
import { Readable } from 'node:stream';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { readCsvRows } from './csv.ts';
import { InputError, EmptyInputError, OptionsError } from './errors.ts';
import { contentLengthMismatch, headersSchema, methodSchema } from './options.ts';

/** Input formats. `auto` sniffs text, NDJSON or JSON from the first line; CSV is only ever chosen explicitly. */
export const INPUT_FORMATS = ['auto', 'text', 'ndjson', 'json', 'csv'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

/** Longest URL accepted; longer ones are refused with their line number. */
export const MAX_URL_LENGTH = 65_536;

/** Input size limits, stated once. */
export const INPUT_LIMITS = {
  /**
   * Longest line of a text or NDJSON list, in bytes. Enforced while reading: a longer line is
   * refused without being held (a 600 MB line with no newline must not take the server down).
   */
  maxLineBytes: 1024 * 1024,
  /** Largest JSON document (`{"urls": [...]}`), parsed whole; larger lists are sent as NDJSON or text. */
  maxJsonBytes: 16 * 1024 * 1024,
  /**
   * Deepest nesting of arrays and objects in a JSON document or NDJSON line. A list needs 4 levels
   * (`{"urls": [{"headers": {...}}]}`); millions of `[` would stall the parser for seconds and take
   * a gigabyte, so they are refused by a scan before JSON.parse sees them.
   */
  maxJsonDepth: 32,
} as const;

/**
 * Refuses JSON text nested deeper than {@link INPUT_LIMITS.maxJsonDepth}, in one pass over the text
 * (strings skipped), before it reaches JSON.parse.
 *
 * @throws {InputError} naming the line (counted from `firstLine`) and column where the limit is passed.
 * @example
 * checkJsonDepth('[[[1]]]', 1); // fine
 */
export function checkJsonDepth(text: string, firstLine?: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // a backslash escapes the next character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > INPUT_LIMITS.maxJsonDepth) {
        let line = firstLine ?? 1;
        let lineStart = 0;
        for (let j = 0; j < i; j++) {
          if (text.charCodeAt(j) !== 10) continue;
          line++;
          lineStart = j + 1;
        }
        throw new InputError(`JSON nested deeper than ${INPUT_LIMITS.maxJsonDepth} levels at column ${i - lineStart + 1}`, firstLine === undefined ? undefined : line);
      }
    } else if (c === 93 || c === 125) depth--;
  }
}

/** One URL to fetch, with the per-item overrides an NDJSON or JSON entry may carry. */
export interface InputItem {
  url: string;
  id?: string | number | null;
  method?: string;
  headers?: Record<string, string>;
  body?: string | null;
  /** The caller's own data for the item (a CSV row's other columns), copied into its record. */
  fields?: Record<string, string>;
}

/** An item with its 0-based position among the fetched lines. */
export interface IndexedItem extends InputItem {
  index: number;
  /** With the `dedupe` option: the index of the first item with the same URL (this one is not fetched). */
  duplicateOf?: number;
}

/** How to read the input, besides its format. */
export interface InputReadOptions {
  /** CSV: the column holding the URL (default `url`). */
  urlColumn?: string;
}

const itemSchema = z
  .object({
    url: z.string(),
    id: z.union([z.string().max(1024), z.number(), z.null()]).optional(),
    method: methodSchema.optional(),
    headers: headersSchema.optional(),
    body: z.string().nullable().optional(),
    fields: z.record(z.string(), z.string()).optional(),
  })
  .strict();

const documentSchema = z
  .object({
    urls: z.array(z.unknown()),
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

/** What {@link openInput} found: the items as a stream, and options when a JSON document carried them. */
export interface OpenedInput {
  format: Exclude<InputFormat, 'auto'>;
  options?: Record<string, unknown>;
  items: AsyncIterable<IndexedItem>;
}

/**
 * A URL the quick check may take: scheme http or https (the parser lowercases it), no `@` (so no
 * user name or password to check), and ASCII only. Node 20's URL.canParse, once optimised, hands
 * a one-byte string to the parser as UTF-8 bytes: `http://\u00c3\u0080/` (mojibake) then parses
 * as `http://\u00c0/` although `new URL` refuses it.
 */
const QUICK_URL = /^https?:[^@\u0080-\uffff]*$/i;

/**
 * Checks a URL string: parseable, http or https, not absurdly long.
 *
 * @returns the URL as given (trimmed): the record keeps what the user wrote.
 * @throws {InputError} naming the line.
 */
export function checkUrl(raw: unknown, line?: number, field?: string): string {
  if (typeof raw !== 'string') throw new InputError('"url" must be a string', line, field);
  const url = raw.trim();
  if (url.length > MAX_URL_LENGTH) {
    throw new InputError(`URL longer than ${MAX_URL_LENGTH} characters`, line, field);
  }
  // `http://host/a some note` would be fetched as /a%20some%20note: junk after a URL is a mistake.
  if (/\s/u.test(url)) {
    const hint = field === undefined ? 'put notes on their own line starting with #' : 'percent-encode spaces as %20';
    throw new InputError(`whitespace inside the URL ${quote(url)}; ${hint}`, line, field);
  }
  // Most lines (see QUICK_URL) only need to parse, which URL.canParse does without building a URL
  // object (under half the time of `new URL` for a list's first, cold lines). Anything else takes
  // the full path below, for its message.
  if (QUICK_URL.test(url) && URL.canParse(url)) return url;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputError(`not a valid URL: ${quote(url)}`, line, field);
  }
  const { protocol, username, password } = parsed;
  if (protocol !== 'http:' && protocol !== 'https:') {
    throw new InputError(
      `unsupported scheme "${protocol}" in ${quote(url)}: only http and https URLs are fetched`,
      line,
      field,
    );
  }
  // The user name and password become a Basic Authorization header: they must decode.
  try {
    decodeURIComponent(username);
    decodeURIComponent(password);
  } catch {
    throw new InputError(`the user name or password in ${quote(url)} is not valid percent-encoding`, line, field);
  }
  return url;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 117)}...` : s);
}

function checkItem(value: unknown, line: number | undefined, field: string | undefined): InputItem {
  if (typeof value === 'string') return { url: checkUrl(value, line, field) };
  const parsed = itemSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = [field, ...issue.path.map(String)].filter(Boolean).join('.');
    const what =
      issue.code === 'unrecognized_keys'
        ? `unknown field "${issue.keys[0]}"`
        : `${path ? `"${path}": ` : ''}${issue.message}`;
    throw new InputError(what, line, path || field);
  }
  const item = parsed.data as InputItem;
  item.url = checkUrl(item.url, line, field ? `${field}.url` : 'url');
  const mismatch = contentLengthMismatch(item.headers, item.body);
  if (mismatch) throw new InputError(mismatch, line, field ? `${field}.headers.content-length` : 'headers.content-length');
  return item;
}

/**
 * Opens an input stream and yields its items with their indexes. The format is sniffed from the
 * first line when `format` is `auto`: `{` with a `url` field is NDJSON, another `{` or `[` a JSON
 * document, anything else text. Text and NDJSON stream; a JSON document is parsed whole.
 *
 * Iterating `items` throws {@link InputError} at the first bad line, and {@link EmptyInputError}
 * when nothing was found.
 *
 * @example
 * const input = await openInput(fs.createReadStream('urls.txt'));
 * for await (const item of input.items) console.log(item.index, item.url);
 */
export async function openInput(
  source: AsyncIterable<Uint8Array | string> | Readable,
  format: InputFormat = 'auto',
  read: InputReadOptions = {},
): Promise<OpenedInput> {
  if (format === 'csv') return openCsv(source, read);
  const lines = new LineReader(source, INPUT_LIMITS.maxLineBytes);
  try {
    return await open(lines, format);
  } catch (error) {
    await lines.close();
    throw error;
  }
}

async function open(lines: LineReader, format: InputFormat): Promise<OpenedInput> {
  // Peek the first significant line to choose the format; it is replayed below.
  let lineNo = 0;
  let first: string | undefined;
  /** The first line as it was (without a BOM): a JSON document keeps its indentation, for columns. */
  let firstRaw = '';
  let firstTooLong = false;
  for (;;) {
    const next = await lines.next();
    if (next === undefined) break;
    lineNo++;
    if (next === TOO_LONG) {
      // Only a JSON document may have a line this long: its size is checked as it is read.
      const head = lines.peekText(16).replace(/^\uFEFF/, '').trimStart();
      const jsonLike = format === 'json' || (format === 'auto' && (head.startsWith('{') || head.startsWith('[')));
      if (!jsonLike) throw lineTooLong(lineNo);
      firstTooLong = true;
      first = '';
      break;
    }
    firstRaw = next.replace(/^\uFEFF/, '');
    const trimmed = firstRaw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    first = trimmed;
    break;
  }
  const firstLine = lineNo;
  if (first === undefined) throw new EmptyInputError();

  let chosen: Exclude<InputFormat, 'auto'>;
  if (firstTooLong || format === 'json') chosen = 'json';
  else if (format !== 'auto') chosen = format;
  else if (first.startsWith('[')) chosen = 'json';
  else if (first.startsWith('{')) chosen = looksLikeNdjsonItem(first) ? 'ndjson' : 'json';
  else chosen = 'text';

  if (chosen === 'json') {
    const parts: Buffer[] = first === '' ? [] : [Buffer.from(' '.repeat(indentOf(firstRaw)) + first + '\n')];
    let size = parts[0]?.length ?? 0;
    for await (const bytes of lines.rest()) {
      size += bytes.length;
      if (size > INPUT_LIMITS.maxJsonBytes) throw jsonTooLarge();
      parts.push(bytes);
    }
    return parseJsonDocument(Buffer.concat(parts).toString('utf8').replace(/^\uFEFF/, ''), firstLine, firstTooLong && format === 'auto');
  }

  async function* items(): AsyncGenerator<IndexedItem> {
    let index = 0;
    let line = firstLine;
    let current: string | undefined = first;
    let indent = indentOf(firstRaw);
    try {
      for (;;) {
        if (current !== undefined && current !== '' && !current.startsWith('#')) {
          // A fresh object from the parser: numbered in place, not copied.
          const item = (index === 0 && chosen === 'text' ? firstTextItem(current, line) : parseItemLine(current, chosen as 'text' | 'ndjson', line, indent)) as IndexedItem;
          item.index = index++;
          yield item;
        }
        const next = lines.nextBuffered() ?? (await lines.next());
        if (next === undefined) break;
        line++;
        if (next === TOO_LONG) throw lineTooLong(line);
        current = next.trim();
        indent = indentOf(next.replace(/^\uFEFF/, ''));
      }
    } finally {
      await lines.close();
    }
    if (index === 0) throw new EmptyInputError();
  }
  return { format: chosen, items: items() };
}

/**
 * A CSV list: rows become items as they are read (see csv.ts). The first row is read here, so a
 * missing URL column or an empty file fails before a job is planned.
 */
async function openCsv(source: AsyncIterable<Uint8Array | string> | Readable, read: InputReadOptions): Promise<OpenedInput> {
  const rows = readCsvRows(source, { urlColumn: read.urlColumn, maxRowChars: INPUT_LIMITS.maxLineBytes, tooLong: lineTooLong });
  const first = await rows.next();
  async function* items(): AsyncGenerator<IndexedItem> {
    let index = 0;
    let next = first;
    try {
      while (!next.done) {
        const { line, url, id, fields } = next.value;
        const item: IndexedItem = { url: checkUrl(url, line, read.urlColumn ?? 'url'), index: index++ };
        if (id !== null) item.id = id;
        if (fields) item.fields = fields;
        yield item;
        next = await rows.next();
      }
    } finally {
      await rows.return(undefined);
    }
  }
  return { format: 'csv', items: items() };
}

/** The first line of a text list; a CSV header there (`url,id,note`) gets a hint rather than "not a valid URL". */
function firstTextItem(text: string, line: number): InputItem {
  try {
    return parseItemLine(text, 'text', line);
  } catch (error) {
    if (error instanceof InputError && text.includes(',') && !/^https?:\/\//i.test(text)) {
      throw new InputError(`${error.message.replace(/^line \d+: /, '')}: if this is a CSV header row, read the list as CSV (--format csv, or content-type text/csv)`, line);
    }
    throw error;
  }
}

function lineTooLong(line: number): InputError {
  return new InputError(
    `line longer than ${INPUT_LIMITS.maxLineBytes} bytes (${INPUT_LIMITS.maxLineBytes / 1024 / 1024} MiB): is this a list with one URL per line?`,
    line,
  );
}

function jsonTooLarge(): InputError {
  return new InputError(
    `a JSON document may hold at most ${INPUT_LIMITS.maxJsonBytes} bytes (${INPUT_LIMITS.maxJsonBytes / 1024 / 1024} MiB): send larger lists as NDJSON (one {"url": ...} per line) or as text (one URL per line)`,
    undefined,
    'format',
  );
}

const TOO_LONG = Symbol('line too long');

/**
 * Lines of a byte stream, split on LF (a trailing CR is dropped), each at most `maxBytes`: a longer
 * line is reported as {@link TOO_LONG} as soon as that many bytes arrived without a newline, so
 * memory stays bounded by the limit plus one read whatever the input. Splitting bytes on LF never
 * cuts a UTF-8 character.
 */
class LineReader {
  private buffer: Buffer = Buffer.alloc(0);
  /** Where the bytes not yet returned begin in `buffer` (lines are not sliced off one by one). */
  private start = 0;
  private ended = false;
  /** Bytes of the source taken by the lines returned so far, newlines included. */
  consumed = 0;
  private readonly source: AsyncIterator<Uint8Array | string>;

  constructor(
    input: AsyncIterable<Uint8Array | string> | Readable,
    private readonly maxBytes: number,
  ) {
    this.source = (input as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.source.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    const value = next.value;
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const left = this.buffer.length - this.start;
    this.buffer = left === 0 ? bytes : Buffer.concat([this.buffer.subarray(this.start), bytes]);
    this.start = 0;
    return true;
  }

  /**
   * The next line if it is already buffered (or TOO_LONG); null when more bytes must be read first
   * (then call {@link next}). A list of short lines is split with no promise per line.
   */
  nextBuffered(): string | typeof TOO_LONG | null {
    const nl = this.buffer.indexOf(10, this.start);
    if (nl === -1) return this.buffer.length - this.start > this.maxBytes ? TOO_LONG : null;
    if (nl - this.start > this.maxBytes) return TOO_LONG;
    const end = nl > this.start && this.buffer[nl - 1] === 13 ? nl - 1 : nl;
    const line = this.buffer.toString('utf8', this.start, end);
    this.consumed += nl + 1 - this.start;
    this.start = nl + 1;
    return line;
  }

  /** The next line, TOO_LONG (the line's bytes stay buffered, for {@link rest}), or undefined at the end. */
  async next(): Promise<string | typeof TOO_LONG | undefined> {
    for (;;) {
      const line = this.nextBuffered();
      if (line !== null) return line;
      if (!(await this.fill())) {
        if (this.buffer.length === this.start) return undefined;
        const last = this.buffer.toString('utf8', this.start).replace(/\r$/, '');
        this.consumed += this.buffer.length - this.start;
        this.buffer = Buffer.alloc(0);
        this.start = 0;
        return last;
      }
    }
  }

  /** The first characters not yet returned as a line. */
  peekText(chars: number): string {
    return this.buffer.toString('utf8', this.start, Math.min(this.buffer.length, this.start + chars * 4));
  }

  /** Everything not yet returned as a line, as it arrives. */
  async *rest(): AsyncGenerator<Buffer> {
    if (this.buffer.length > this.start) yield this.buffer.subarray(this.start);
    this.buffer = Buffer.alloc(0);
    this.start = 0;
    while (await this.fill()) {
      yield this.buffer;
      this.buffer = Buffer.alloc(0);
    }
  }

  /** Stops reading: the source (a request body, a file, an S3 object) is released. */
  async close(): Promise<void> {
    this.ended = true;
    this.buffer = Buffer.alloc(0);
    this.start = 0;
    await this.source.return?.();
  }
}

/**
 * Lines of a byte stream read from `from.offset` (the 1-based line numbers continuing after
 * `from.line`), each with the offset just past it: the same bounded splitter as {@link openInput},
 * for a list planned in slices.
 *
 * @throws {InputError} naming a line longer than INPUT_LIMITS.maxLineBytes, as soon as that many of
 *   its bytes arrived (the line is never held whole).
 * @example
 * for await (const { text, end, line } of boundedLines(await store.getStream(key, { start }), { offset: start, line: 0 })) ...
 */
export async function* boundedLines(
  source: AsyncIterable<Uint8Array | string> | Readable,
  from: { offset: number; line: number } = { offset: 0, line: 0 },
): AsyncGenerator<{ text: string; end: number; line: number }> {
  const lines = new LineReader(source, INPUT_LIMITS.maxLineBytes);
  let line = from.line;
  try {
    for (let text = await lines.next(); text !== undefined; text = lines.nextBuffered() ?? (await lines.next())) {
      line++;
      if (text === TOO_LONG) throw lineTooLong(line);
      yield { text, end: from.offset + lines.consumed, line };
    }
  } finally {
    await lines.close();
  }
}

function looksLikeNdjsonItem(line: string): boolean {
  try {
    checkJsonDepth(line);
    const value = JSON.parse(line);
    return value !== null && typeof value === 'object' && 'url' in value;
  } catch {
    return false; // the start of a multi-line JSON document (its errors name their line too)
  }
}

/**
 * One significant line of a text or NDJSON list (not blank, not a comment), checked.
 *
 * @throws {InputError} naming the line.
 */
export function parseItemLine(text: string, format: 'text' | 'ndjson', line: number, indent = 0): InputItem {
  return format === 'text' ? { url: checkUrl(text, line) } : parseNdjsonLine(text, line, indent);
}

/** Characters before a line's first non-blank one: the column of a trimmed line's error counts them. */
export function indentOf(raw: string): number {
  return raw.length - raw.trimStart().length;
}

/** An NDJSON line, trimmed (`indent`: the characters trimmed from its start, for the column of an error). */
function parseNdjsonLine(text: string, line: number, indent: number): InputItem {
  checkJsonDepth(text, line);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const { column, what } = jsonSyntaxError(text, line);
    throw new InputError(`not valid JSON: ${what} at column ${column + indent}`, line);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InputError('expected a JSON object like {"url": "https://..."}', line);
  }
  return checkItem(value, line, undefined);
}

/**
 * Where and what the first syntax error of a JSON text is. JSON.parse's messages give no position
 * for many errors on Node 20, so a tolerant parser (jsonc-parser, strict settings) locates it.
 */
function jsonSyntaxError(text: string, firstLine: number): { line: number; column: number; what: string } {
  const errors: ParseError[] = [];
  parseJsonc(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  let what = errors[0]
    ? printParseErrorCode(errors[0].error)
        .replace(/([a-z])([A-Z])/g, '$1 $2')
        .toLowerCase()
    : 'syntax error';
  // A document cut short fails past its last character (after the newline the reader adds, a line
  // that does not exist): it is placed just after its last character, and said to end early.
  const end = text.replace(/[ \t\r\n]+$/, '').length; // JSON's whitespace only
  let offset = errors[0]?.offset ?? 0;
  if (offset >= end) {
    offset = end;
    what = `it ends early (${what})`;
  }
  let line = firstLine;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1, what };
}

function parseJsonDocument(text: string, firstLine: number, mayBeNdjson = false): OpenedInput {
  checkJsonDepth(text, firstLine);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    if (mayBeNdjson && looksLikeNdjsonItem(text.slice(0, text.indexOf('\n') >>> 0))) throw lineTooLong(firstLine);
    const { line, column, what } = jsonSyntaxError(text, firstLine);
    throw new InputError(`not valid JSON: ${what} at column ${column}`, line);
  }
  // One huge NDJSON line, sniffed as a document because of its length: say what is wrong with it.
  if (mayBeNdjson && value !== null && typeof value === 'object' && 'url' in value) throw lineTooLong(firstLine);
  if (Array.isArray(value)) value = { urls: value };
  const doc = documentSchema.safeParse(value);
  if (!doc.success) {
    const issue = doc.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      throw new InputError(`unknown field "${issue.keys[0]}" (expected "urls" and "options")`, undefined, issue.keys[0]);
    }
    const field = issue.path.join('.') || 'urls';
    throw new InputError(`"${field}": ${issue.message}`, undefined, field);
  }
  // Validate every entry before anything is yielded, so a bad entry fails the whole document.
  const checked = doc.data.urls.map((entry, i) => checkItem(entry, undefined, `urls[${i}]`));
  if (checked.length === 0) throw new EmptyInputError();
  if (doc.data.options !== undefined && typeof doc.data.options !== 'object') {
    throw new OptionsError('"options" must be an object', 'options');
  }
  async function* items(): AsyncGenerator<IndexedItem> {
    for (let i = 0; i < checked.length; i++) yield { ...checked[i]!, index: i };
  }
  return { format: 'json', options: doc.data.options, items: items() };
}
