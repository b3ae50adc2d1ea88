/**
 * Input parsing: a URL list as plain text, NDJSON or a JSON document, read as a stream so a
 * ten-million-line file is never held whole. Every error names its line (or, in a JSON document,
 * its field), and only http: and https: URLs get through: a typo must fail the submission, not
 * quietly become a failed record.
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { InputError, EmptyInputError, OptionsError } from './errors.ts';
import { headersSchema, methodSchema } from './options.ts';

export const INPUT_FORMATS = ['auto', 'text', 'ndjson', 'json'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

/** Longest URL accepted; longer ones are refused with their line number. */
export const MAX_URL_LENGTH = 65_536;

/** One URL to fetch, with the per-item overrides an NDJSON or JSON entry may carry. */
export interface InputItem {
  url: string;
  id?: string | number | null;
  method?: string;
  headers?: Record<string, string>;
  body?: string | null;
}

/** An item with its 0-based position among the fetched lines. */
export interface IndexedItem extends InputItem {
  index: number;
}

const itemSchema = z
  .object({
    url: z.string(),
    id: z.union([z.string().max(1024), z.number(), z.null()]).optional(),
    method: methodSchema.optional(),
    headers: headersSchema.optional(),
    body: z.string().nullable().optional(),
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
  if (!URL.canParse(url)) throw new InputError(`not a valid URL: ${quote(url)}`, line, field);
  const { protocol } = new URL(url);
  if (protocol !== 'http:' && protocol !== 'https:') {
    throw new InputError(
      `unsupported scheme "${protocol}" in ${quote(url)}: only http and https URLs are fetched`,
      line,
      field,
    );
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
): Promise<OpenedInput> {
  const stream = source instanceof Readable ? source : Readable.from(source);
  stream.setEncoding('utf8');
  const lines = createInterface({ input: stream, crlfDelay: Infinity })[Symbol.asyncIterator]();

  // Peek the first significant line to choose the format; it is replayed below.
  let lineNo = 0;
  let first: string | undefined;
  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    lineNo++;
    const trimmed = next.value.replace(/^\uFEFF/, '').trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    first = trimmed;
    break;
  }
  const firstLine = lineNo;
  if (first === undefined) throw new EmptyInputError();

  let chosen: Exclude<InputFormat, 'auto'>;
  if (format !== 'auto') chosen = format;
  else if (first.startsWith('[')) chosen = 'json';
  else if (first.startsWith('{')) chosen = looksLikeNdjsonItem(first) ? 'ndjson' : 'json';
  else chosen = 'text';

  if (chosen === 'json') {
    let text = first;
    for (;;) {
      const next = await lines.next();
      if (next.done) break;
      text += '\n' + next.value;
    }
    return parseJsonDocument(text, firstLine);
  }

  async function* items(): AsyncGenerator<IndexedItem> {
    let index = 0;
    let line = firstLine;
    let current: string | undefined = first;
    for (;;) {
      if (current !== undefined && current !== '' && !current.startsWith('#')) {
        const item = parseItemLine(current, chosen as 'text' | 'ndjson', line);
        yield { ...item, index: index++ } as IndexedItem;
      }
      const next = await lines.next();
      if (next.done) break;
      line++;
      current = next.value.trim();
    }
    if (index === 0) throw new EmptyInputError();
  }
  return { format: chosen, items: items() };
}

function looksLikeNdjsonItem(line: string): boolean {
  try {
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
export function parseItemLine(text: string, format: 'text' | 'ndjson', line: number): InputItem {
  return format === 'text' ? { url: checkUrl(text, line) } : parseNdjsonLine(text, line);
}

function parseNdjsonLine(text: string, line: number): InputItem {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const { column, what } = jsonSyntaxError(text, line);
    throw new InputError(`not valid JSON: ${what} at column ${column}`, line);
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
  const offset = errors[0]?.offset ?? 0;
  const what = errors[0]
    ? printParseErrorCode(errors[0].error)
        .replace(/([a-z])([A-Z])/g, '$1 $2')
        .toLowerCase()
    : 'syntax error';
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

function parseJsonDocument(text: string, firstLine: number): OpenedInput {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const { line, column, what } = jsonSyntaxError(text, firstLine);
    throw new InputError(`not valid JSON: ${what} at column ${column}`, line);
  }
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
