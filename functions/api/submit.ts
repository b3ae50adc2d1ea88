/**
 * Turning a POST /jobs request into a planned job: the body's content type picks the input format,
 * options come from a JSON body and from query parameters, and a large list may come from an
 * upload. Text and NDJSON bodies are parsed as they stream in.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Context } from 'hono';
import { z } from 'zod';
import { OptionsError } from '../core/errors.ts';
import { INPUT_FORMATS, checkJsonDepth, openInput, type InputFormat, type OpenedInput } from '../core/input.ts';
import { layout } from '../core/layout.ts';
import { DEFAULT_OPTIONS, OPTION_NAMES, parseJobOptions, type JobOptions } from '../core/options.ts';
import { ndjsonOfItems, planWithinBudget } from '../core/plan-budget.ts';
import type { Submitted } from '../core/plan-slices.ts';
import { checkUploadOpen, submitUpload } from '../core/uploads.ts';
import { planJob } from '../core/plan.ts';
import type { ApiDeps } from './deps.ts';
import { problem } from './problem.ts';

const FORMAT_OF: Record<string, InputFormat> = {
  'text/plain': 'text',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
  'application/json': 'json',
  'text/csv': 'csv',
};

/** Query parameters that are not job options. */
const QUERY_EXTRAS = new Set(['format', 'urlColumn']);

const uploadSubmission = z
  .object({
    upload: z.string(),
    options: z.record(z.string(), z.unknown()).optional(),
    format: z.enum(INPUT_FORMATS).optional(),
    /** With format csv: the URL column. */
    urlColumn: z.string().min(1).max(1024).optional(),
  })
  .strict();

/**
 * Job options given as query parameters: `?concurrency=10&bodies=none&header=x-k:%20v`.
 * Numbers are converted, repeated `header` parameters collected; unknown names are refused.
 */
export function optionsFromQuery(query: URLSearchParams): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const [name, value] of query) {
    if (QUERY_EXTRAS.has(name)) continue;
    if (name === 'header') {
      const colon = value.indexOf(':');
      if (colon <= 0) throw new OptionsError(`query parameter "header": expected "name: value", got ${JSON.stringify(value)}`, 'headers');
      const headers = (options.headers ??= {}) as Record<string, string>;
      headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim();
      continue;
    }
    if (name === 'headerEnv') {
      // Repeatable `headerEnv=authorization=API_TOKEN`: a header and the variable the worker reads it from.
      const eq = value.indexOf('=');
      if (eq <= 0) throw new OptionsError(`query parameter "headerEnv": expected "name=VARIABLE", got ${JSON.stringify(value)}`, 'headerEnv');
      const entries = (options.headerEnv ??= {}) as Record<string, string>;
      entries[value.slice(0, eq).trim()] = value.slice(eq + 1).trim();
      continue;
    }
    if (!OPTION_NAMES.includes(name as keyof JobOptions)) throw new OptionsError(`unknown option "${name}"`, name);
    const numeric = typeof DEFAULT_OPTIONS[name as keyof JobOptions] === 'number';
    const boolean = typeof DEFAULT_OPTIONS[name as keyof JobOptions] === 'boolean';
    options[name] = numeric && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : boolean && /^(true|false)$/.test(value) ? value === 'true' : value;
  }
  return options;
}

function bodyStream(c: Context): Readable {
  const body = c.req.raw.body;
  if (!body) return Readable.from([]);
  return Readable.fromWeb(body as unknown as WebReadableStream<Uint8Array>);
}

type RequestInput =
  | { input: OpenedInput; bodyOptions?: Record<string, unknown>; source: string }
  | { raw: Buffer; format: 'text' | 'ndjson'; source: string }
  | { upload: string; format: InputFormat; urlColumn?: string; bodyOptions?: Record<string, unknown>; source: string };

async function inputOf(c: Context, deps: ApiDeps): Promise<RequestInput> {
  const contentType = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const format = FORMAT_OF[contentType];
  if (!format) {
    throw problem(
      415,
      'Unsupported media type',
      `send the list as text/plain, application/x-ndjson, text/csv or application/json, not ${JSON.stringify(contentType || 'no content type')} (with curl: -H 'content-type: text/plain' --data-binary @urls.txt)`,
      { field: 'content-type' },
    );
  }
  if (format !== 'json') {
    // Within a time budget the body is stored and planned from there (a runtime with a budget bounds its size);
    // other formats (CSV) are parsed here and planned as NDJSON.
    if (deps.budgetMs !== undefined && (format === 'text' || format === 'ndjson')) return { raw: Buffer.from(await c.req.arrayBuffer()), format, source: 'api' };
    const urlColumn = new URL(c.req.url).searchParams.get('urlColumn') ?? undefined;
    return { input: await openInput(bodyStream(c), format, { urlColumn }), source: 'api' };
  }

  const text = await c.req.text();
  checkJsonDepth(text, 1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { input: await openInput(Readable.from([text]), 'json'), source: 'api' }; // names the line
  }
  if (parsed !== null && typeof parsed === 'object' && 'upload' in parsed) {
    const submission = uploadSubmission.safeParse(parsed);
    if (!submission.success) throw OptionsError.fromZod(submission.error, 'field');
    const { upload, options, format, urlColumn } = submission.data;
    // A slot submitted before, or expired: 409 naming why (its list is gone by then).
    if (await deps.store.exists(layout.upload(upload))) await checkUploadOpen(deps.store, upload);
    if (!(await deps.store.exists(layout.uploadList(upload)))) {
      throw problem(409, 'Upload not received', `nothing was uploaded for ${upload} yet: PUT the list to the upload URL first`, { field: 'upload' });
    }
    return { upload, format: format ?? 'auto', urlColumn, bodyOptions: options, source: `upload:${upload}` };
  }
  return { input: await openInput(Readable.from([text]), 'json'), source: 'api' };
}

/**
 * Plans the job a request describes (a large upload, where the runtime plans in slices, is handed
 * to the workers). With `deps.budgetMs` (AWS), planning stops when that much of the request's time
 * is spent and the workers go on: the answer is then `state: "planning"`.
 *
 * @throws InputError, OptionsError or a problem HTTPException; nothing is created then.
 */
export async function submitFromRequest(c: Context, deps: ApiDeps): Promise<Submitted> {
  const started = Date.now();
  const queryOptions = optionsFromQuery(new URL(c.req.url).searchParams);
  const request = await inputOf(c, deps);
  const options = { ...('bodyOptions' in request ? request.bodyOptions : {}), ...queryOptions };
  // Checked before anything is planned, against this runtime's workers too (AWS: their timeout).
  const effective = parseJobOptions({ ...('input' in request ? request.input.options : {}), ...options });
  deps.checkOptions?.(effective);
  const deadline = deps.budgetMs === undefined ? undefined : started + deps.budgetMs;
  if ('upload' in request) {
    return submitUpload(
      deps.store,
      deps.queue,
      request.upload,
      // The list's own options (a JSON document's) are held to the same checks when it is read.
      { format: request.format, urlColumn: request.urlColumn, options, source: request.source, planInSlicesAboveBytes: deps.planInSlicesAboveBytes, checkOptions: deps.checkOptions },
      deadline,
    );
  }
  if ('raw' in request) {
    return planWithinBudget(deps.store, deps.queue, { body: request.raw, format: request.format, options, source: request.source, deadline: deadline! });
  }
  if (deadline !== undefined) {
    // A JSON document (validated whole as it was parsed) is planned as NDJSON, so it can be resumed at a line.
    const body = await ndjsonOfItems(request.input);
    return planWithinBudget(deps.store, deps.queue, { body, format: 'ndjson', options: { ...request.input.options, ...options }, source: request.source, deadline });
  }
  const job = await planJob(deps.store, deps.queue, { input: request.input, options, source: request.source });
  return { jobId: job.jobId, total: job.total, chunks: job.chunks, state: 'queued', createdAt: job.createdAt };
}
