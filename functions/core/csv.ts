/**
 * CSV input: a header row, then one item per row. The URL is taken from one column (`url` unless
 * told otherwise), an `id` column becomes the item's id, and every other column is kept as the
 * item's `fields` (copied into its record), so a spreadsheet's notes come back with the results.
 *
 * Parsing is csv-parse's (RFC 4180 quotes, a BOM, CRLF), streamed: a row is at most
 * {@link INPUT_LIMITS.maxLineBytes}, and a longer one (an unterminated quote, a file with no
 * newline) is refused as soon as it gets that long, never held.
 */
import { Readable } from 'node:stream';
import { CsvError, parse } from 'csv-parse';
import { EmptyInputError, InputError } from './errors.ts';

/** CSV input defaults and limits, stated once. */
export const CSV_DEFAULTS = {
  /** The column holding the URL. */
  urlColumn: 'url',
  /** The column holding the item's id, when the header has one. */
  idColumn: 'id',
  /** Most columns a header may have: every row's fields are copied into its record. */
  maxColumns: 1_000,
} as const;

/** A CSV row as an item: its URL cell (unchecked), id and other cells. */
export interface CsvRow {
  /** 1-based line of the row (its last line, when a quoted cell spans lines). */
  line: number;
  url: string;
  id: string | null;
  fields: Record<string, string> | undefined;
}

export interface CsvOptions {
  /** Column of the URL (default {@link CSV_DEFAULTS.urlColumn}). */
  urlColumn?: string;
  /** Longest row, in characters. */
  maxRowChars: number;
  /** The error for a row longer than `maxRowChars`. */
  tooLong: (line: number) => InputError;
}

/**
 * The rows of a CSV stream, as they are read. Blank rows, rows of empty cells and lines starting
 * with `#` are skipped (as in a text list).
 *
 * @throws {InputError} naming the line: a missing URL column (the header row, line 1), a row with
 *   more or fewer cells than the header, a stray quote, a row too long.
 * @example
 * for await (const row of readCsvRows(fs.createReadStream('list.csv'), { maxRowChars: 1 << 20, tooLong })) console.log(row.url);
 */
export async function* readCsvRows(source: AsyncIterable<Uint8Array | string> | Readable, options: CsvOptions): AsyncGenerator<CsvRow> {
  const urlColumn = options.urlColumn ?? CSV_DEFAULTS.urlColumn;
  // The header is the first row read (comments and blank lines before it are skipped).
  let headerLine = 1;
  const parser = parse({
    bom: true,
    info: true,
    columns: (header: string[]) => checkHeader(header, urlColumn),
    record_delimiter: ['\r\n', '\n', '\r'],
    skip_empty_lines: true,
    skip_records_with_empty_values: true,
    comment: '#',
    comment_no_infix: true,
    max_record_size: options.maxRowChars,
  });
  const input = source instanceof Readable ? source : Readable.from(source);
  input.on('error', (error) => parser.destroy(error));
  input.pipe(parser);
  let rows = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      rows++;
      const line = info.lines;
      const { [urlColumn]: url, ...rest } = record;
      let id: string | null = null;
      if (urlColumn !== CSV_DEFAULTS.idColumn && CSV_DEFAULTS.idColumn in rest) {
        id = rest[CSV_DEFAULTS.idColumn]!.trim() || null;
        delete rest[CSV_DEFAULTS.idColumn];
      }
      if (url === undefined || url.trim() === '') throw new InputError(`the "${urlColumn}" cell is empty`, line, urlColumn);
      yield { line, url, id, fields: Object.keys(rest).length > 0 ? rest : undefined };
    }
  } catch (error) {
    throw csvError(error, options, headerLine);
  } finally {
    input.unpipe(parser);
    parser.destroy();
    input.destroy();
  }
  if (rows === 0) throw new EmptyInputError();

  function checkHeader(header: string[], column: string): string[] {
    headerLine = parser.info.lines;
    const names = header.map((name) => name.trim());
    const where = `the header row (line ${headerLine}: ${quoteList(names)})`;
    if (!names.includes(column)) {
      throw new InputError(`no "${column}" column in ${where}: name the URL column with --url-column (API: urlColumn)`, headerLine, 'urlColumn');
    }
    if (names.length > CSV_DEFAULTS.maxColumns) throw new InputError(`more than ${CSV_DEFAULTS.maxColumns} columns in the header row`, headerLine);
    const seen = new Set<string>();
    for (const name of names) {
      if (name === '') throw new InputError(`an empty column name in ${where}`, headerLine);
      if (seen.has(name)) throw new InputError(`column "${name}" appears twice in ${where}`, headerLine);
      seen.add(name);
    }
    return names;
  }
}

function quoteList(names: string[]): string {
  const text = names.map((n) => JSON.stringify(n)).join(', ');
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** csv-parse's errors in fanout's words, with their line. */
function csvError(error: unknown, options: CsvOptions, headerLine: number): unknown {
  if (error instanceof InputError) return error;
  // An error thrown by the `columns` callback comes wrapped.
  const cause = (error as { cause?: unknown })?.cause;
  if (cause instanceof InputError) return cause;
  if (!(error instanceof CsvError)) return error;
  const line = (error as CsvError & { lines?: number }).lines ?? headerLine;
  switch (error.code) {
    case 'CSV_MAX_RECORD_SIZE':
      return options.tooLong(line);
    case 'CSV_RECORD_INCONSISTENT_COLUMNS':
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH': {
      const got = (error as CsvError & { record?: unknown[] }).record?.length;
      return new InputError(`this row has ${got ?? 'a different number of'} cells, the header row (line ${headerLine}) has ${(error as CsvError & { columns?: unknown[] }).columns?.length ?? 'another number'}`, line);
    }
    case 'CSV_QUOTE_NOT_CLOSED':
      return new InputError('a quoted cell is never closed (a " with no closing ")', line);
    case 'INVALID_OPENING_QUOTE':
    case 'CSV_INVALID_CLOSING_QUOTE':
      return new InputError(`a quote in the middle of a cell: quote the whole cell ("...") and double the quotes inside it ("")`, line);
    default:
      return new InputError(`not valid CSV: ${error.message.replace(/ (on|at) line \d+.*$/, '')}`, line);
  }
}
