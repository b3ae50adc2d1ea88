/**
 * `--out FILE.csv`: records as CSV rows instead of NDJSON, for spreadsheets. A stream that takes the
 * NDJSON of the result files (as it comes, in any pieces) and gives CSV, so it sits between the
 * result files and the output file wherever NDJSON was written.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { stringify } from 'csv-stringify/sync';
import { UsageError } from '../core/errors.ts';
import type { FetchRecord } from '../core/record.ts';

export const OUT_FORMATS = ['ndjson', 'csv'] as const;
export type OutFormat = (typeof OUT_FORMATS)[number];

/** The columns of a CSV output, before the fields of the records (a CSV input's other columns). */
export const CSV_OUT_COLUMNS = [
  'index',
  'url',
  'id',
  'ok',
  'status',
  'finalUrl',
  'redirects',
  'bytes',
  'sha256',
  'durationMs',
  'errorCode',
  'errorMessage',
  'duplicateOf',
] as const;

/**
 * The format of `--out`: `--out-format` when given, else CSV for a `.csv` file, else NDJSON (stdout
 * included).
 *
 * @example
 * outFormatOf('records.csv', undefined) // 'csv'
 * outFormatOf('-', undefined) // 'ndjson'
 */
export function outFormatOf(out: string, flag: string | undefined): OutFormat {
  if (flag !== undefined) {
    if (!(OUT_FORMATS as readonly string[]).includes(flag)) throw new UsageError(`--out-format: expected one of ${OUT_FORMATS.join(', ')}, got ${JSON.stringify(flag)}`);
    return flag as OutFormat;
  }
  return out !== '-' && /\.csv$/i.test(out) ? 'csv' : 'ndjson';
}

/** One record as a CSV row: the fixed columns, then `fieldNames`' values. */
export function csvRow(record: FetchRecord, fieldNames: readonly string[]): unknown[] {
  return [
    record.index,
    record.url,
    record.id,
    record.ok ? 'true' : 'false',
    record.status,
    record.finalUrl,
    record.redirects,
    record.bytes,
    record.sha256,
    record.durationMs,
    record.error?.code,
    record.error?.message,
    record.duplicateOf,
    ...fieldNames.map((name) => record.fields?.[name]),
  ];
}

/**
 * NDJSON records in, CSV out: a header row, then a row per record. The field columns are those of
 * the first record (with a CSV input, its columns besides the URL and id); fields other records
 * have beyond them are left out of the CSV (the NDJSON keeps them).
 *
 * @example
 * await pipeline(Readable.from(readResults(store, jobId)), recordsToCsv(), createWriteStream('out.csv'));
 */
export function recordsToCsv(): Transform {
  let carry = '';
  const decoder = new StringDecoder('utf8');
  let fieldNames: string[] | undefined;
  const rows = (text: string): string => {
    const out: unknown[][] = [];
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const record = JSON.parse(line) as FetchRecord;
      if (fieldNames === undefined) {
        fieldNames = Object.keys(record.fields ?? {});
        // A field named like a fixed column (a CSV input's "status") keeps its data under another name.
        const header = fieldNames.map((name) => ((CSV_OUT_COLUMNS as readonly string[]).includes(name) ? `fields.${name}` : name));
        out.push([...CSV_OUT_COLUMNS, ...header]);
      }
      out.push(csvRow(record, fieldNames));
    }
    return out.length === 0 ? '' : stringify(out, { record_delimiter: 'unix' });
  };
  return new Transform({
    transform(chunk: Buffer | string, _encoding: BufferEncoding, done: TransformCallback) {
      try {
        const text = carry + (typeof chunk === 'string' ? chunk : decoder.write(chunk));
        const end = text.lastIndexOf('\n');
        carry = text.slice(end + 1);
        const csv = rows(text.slice(0, end + 1));
        done(null, csv === '' ? undefined : csv);
      } catch (error) {
        done(error as Error);
      }
    },
    flush(done: TransformCallback) {
      try {
        const csv = rows(carry + decoder.end());
        done(null, csv === '' ? undefined : csv);
      } catch (error) {
        done(error as Error);
      }
    },
  });
}
