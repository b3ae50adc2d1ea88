/**
 * The API's schemas, registered as OpenAPI components. Job options reuse the core schema itself,
 * so the document cannot drift from what the code validates.
 */
import { z } from '@hono/zod-openapi';
import { CHANGES, ERROR_CODES } from '../core/record.ts';
import { jobOptionsSchema } from '../core/options.ts';

// The core schema itself, wrapped so the OpenAPI extension can name it (core code does not load that extension).
export const JobOptions = z.object(jobOptionsSchema.shape).strict().openapi('JobOptions');

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().openapi({ example: 'line 3: unsupported scheme "ftp:" in "ftp://x": only http and https URLs are fetched' }),
    line: z.number().int().optional(),
    field: z.string().optional(),
    instance: z.string().optional(),
  })
  .openapi('Problem');

const Item = z
  .object({
    url: z.string().openapi({ example: 'https://example.com/' }),
    id: z.union([z.string(), z.number(), z.null()]).optional(),
    method: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    body: z.string().nullable().optional(),
    fields: z.record(z.string(), z.string()).optional().openapi({ description: 'your own data for the item, copied into its record' }),
  })
  .openapi('Item');

export const JsonSubmission = z
  .union([
    z.object({ urls: z.array(z.union([z.string(), Item])), options: JobOptions.partial().optional() }),
    z.object({
      upload: z.string().openapi({ description: 'an id from POST /uploads whose list was sent' }),
      options: JobOptions.partial().optional(),
      format: z.enum(['auto', 'text', 'ndjson', 'json', 'csv']).optional(),
      urlColumn: z.string().optional().openapi({ description: 'with format csv: the column holding the URL (default url)' }),
    }),
  ])
  .openapi('JsonSubmission');

export const Accepted = z
  .object({
    jobId: z.string(),
    status: z.string().openapi({ example: '/jobs/01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f' }),
    total: z.number().int().nullable().openapi({ description: 'null while the workers plan the list (a large upload; on AWS, any list whose planning outlasts the call\'s budget): then `state` is `planning`' }),
    chunks: z.number().int().nullable(),
    state: z.enum(['planning', 'queued']).optional(),
  })
  .openapi('Accepted');

const Counts = z.record(z.string(), z.number().int());

export const ChangeCounts = z
  .object({
    new: z.number().int(),
    unchanged: z.number().int(),
    changed: z.number().int(),
    newlyFailing: z.number().int().openapi({ description: 'ok in the baseline, not ok now' }),
    recovered: z.number().int().openapi({ description: 'not ok in the baseline, ok now' }),
  })
  .openapi('ChangeCounts');

export const JobStatus = z
  .object({
    jobId: z.string(),
    state: z.enum(['planning', 'rejected', 'queued', 'running', 'completed', 'cancelled']),
    createdAt: z.string(),
    updatedAt: z.string(),
    finishedAt: z.string().nullable(),
    total: z.number().int(),
    done: z.number().int(),
    succeeded: z.number().int(),
    failed: z.number().int(),
    chunks: z.object({ total: z.number().int(), done: z.number().int() }),
    byStatus: Counts.openapi({ example: { '200': 950, '404': 50 } }),
    byError: Counts.openapi({ example: { timeout: 3 } }),
    latencyMs: z.object({ p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable() }).openapi({ description: 'request latency (durationMs), without the wait for a connection' }),
    queuedMs: z
      .object({ p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable() })
      .openapi({ description: 'the wait for a connection slot (records\' queuedMs): long when the per-host limit holds the job back' }),
    queuedSeconds: z.number().openapi({ description: 'seconds all records waited for a connection slot, summed' }),
    durationSeconds: z.number().openapi({ description: 'seconds all requests took (durationMs), summed' }),
    bytes: z.number().int(),
    cancelRequested: z.boolean(),
    lostChunks: z
      .array(z.number().int())
      .optional()
      .openapi({ description: 'chunks whose records could not be written even as chunk_failed (counted as failed); present only when any' }),
    source: z.string().nullable(),
    options: JobOptions.partial()
      .optional()
      .openapi({ description: 'the options the job was submitted with; values of credential headers (authorization, cookie, names with token, secret, key or auth) read "***"' }),
    results: z.object({
      manifest: z.string().nullable(),
      files: z.array(z.string()).openapi({ description: 'result files in chunk order, at most 1,000 (the links form of /results pages through all)' }),
      filesOmitted: z.number().int().optional().openapi({ description: 'result files left out of `files`' }),
    }),
    error: z
      .object({ message: z.string(), line: z.number().int().optional(), field: z.string().optional() })
      .optional()
      .openapi({ description: 'why a list planned in slices was rejected' }),
    schedule: z.string().optional().openapi({ description: 'the schedule that started the job' }),
    since: z.string().optional().openapi({ description: 'the baseline job (option `since`)' }),
    changes: ChangeCounts.optional().openapi({ description: 'with a baseline: how the records compare with it' }),
    bytesSaved: z.number().int().optional().openapi({ description: 'with a baseline: bytes not downloaded because the origin answered 304' }),
    callback: z
      .object({
        state: z.enum(['pending', 'delivered', 'failed']),
        attempts: z.number().int(),
        lastError: z.string().nullable().openapi({ description: 'the last attempt\'s error code, or "HTTP 503"; null once delivered' }),
        nextAttemptAt: z.string().nullable().openapi({ description: 'while pending after a failed attempt: when the next is due' }),
      })
      .optional()
      .openapi({ description: 'GET /jobs/:id only, for a job with callbackUrl once it has ended: the completion callback (5 attempts over about 6 minutes)' }),
  })
  .openapi('JobStatus');

export const JobList = z
  .object({
    jobs: z.array(JobStatus),
    next: z.string().nullable().openapi({ description: 'cursor for the next (older) page, or null' }),
  })
  .openapi('JobList');

export const Upload = z
  .object({
    uploadId: z.string(),
    url: z.string(),
    method: z.literal('PUT'),
    headers: z.record(z.string(), z.string()),
    expiresAt: z.string().nullable(),
  })
  .openapi('Upload');

export const RecordSchema = z
  .object({
    index: z.number().int(),
    url: z.string(),
    id: z.union([z.string(), z.number(), z.null()]),
    fields: z.record(z.string(), z.string()).optional().openapi({ description: "the item's fields (a CSV row's other columns), when it has any" }),
    duplicateOf: z
      .number()
      .int()
      .optional()
      .openapi({ description: 'with the dedupe option: index of the first record of the same URL; no request was made for this one (ok false, status and error null)' }),
    ok: z.boolean(),
    status: z.number().int().nullable(),
    finalUrl: z.string().nullable(),
    redirects: z.number().int(),
    headers: z
      .record(z.string(), z.union([z.string(), z.array(z.string())]))
      .openapi({ description: 'Response headers, lower-cased; repeated fields joined with ", " except set-cookie, always an array of strings' }),
    bytes: z.number().int(),
    truncated: z.boolean(),
    sha256: z.string().nullable().openapi({ description: 'Hex SHA-256 of the decoded body (also with bodies none); null when no body came' }),
    body: z.string().optional(),
    bodyEncoding: z.enum(['utf8', 'base64']).optional(),
    bodyKey: z.string().optional(),
    attempts: z.number().int(),
    startedAt: z.string(),
    durationMs: z.number(),
    queuedMs: z.number().openapi({ description: 'Milliseconds waiting for a connection slot, over all attempts; not part of durationMs' }),
    error: z.object({ code: z.enum(ERROR_CODES), message: z.string() }).nullable(),
    notModified: z.literal(true).optional().openapi({
      description: "with a baseline: the origin answered 304 to the conditional request; status, ok and sha256 are the baseline's, bytes 0, no body",
    }),
    change: z.enum(CHANGES).optional().openapi({ description: 'with a baseline: new, unchanged or changed (sha256 or status differs)' }),
    previous: z
      .object({ status: z.number().int().nullable(), sha256: z.string().nullable(), ok: z.boolean(), bytes: z.number().int() })
      .nullable()
      .optional()
      .openapi({ description: "with a baseline: the item's record there (null for a new item)" }),
  })
  .openapi('Record');

export const RunEntry = z
  .object({
    jobId: z.string(),
    schedule: z.string(),
    state: z.enum(['planning', 'rejected', 'queued', 'running', 'completed', 'cancelled']),
    createdAt: z.string(),
    finishedAt: z.string().nullable(),
    durationMs: z.number().nullable(),
    total: z.number().int().nullable(),
    done: z.number().int(),
    succeeded: z.number().int(),
    failed: z.number().int(),
    since: z.string().optional(),
    changes: ChangeCounts.optional(),
    bytesSaved: z.number().int().optional(),
  })
  .openapi('Run');

export const RunsPage = z
  .object({
    schedule: z.string(),
    runs: z.array(RunEntry),
    next: z.string().nullable().openapi({ description: 'cursor of the next (older) page, or null' }),
  })
  .openapi('RunsPage');

export const ScheduleInfo = z
  .object({
    name: z.string(),
    expression: z.string(),
    timezone: z.string(),
    list: z.string(),
    enabled: z.boolean(),
    alertOn: z.array(z.string()),
    nextRun: z.string().nullable(),
    lastRun: RunEntry.nullable(),
  })
  .openapi('Schedule');

export const ResultLinks = z
  .object({
    jobId: z.string(),
    format: z.literal('ndjson.gz'),
    files: z.array(z.object({ key: z.string(), url: z.string(), chunk: z.number().int() })).openapi({
      description: 'files of a range of chunks, in order; the files of every page, concatenated, are every record',
    }),
    expiresAt: z.string(),
    next: z.string().nullable().openapi({ description: 'cursor of the next page of links (also in the Link header), null on the last' }),
  })
  .openapi('ResultLinks');

export const JobIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f' }),
});

export const problemResponses = {
  400: { description: 'Bad request', content: { 'application/problem+json': { schema: Problem } } },
  401: { description: 'Missing or wrong bearer token', content: { 'application/problem+json': { schema: Problem } } },
  404: { description: 'No such job', content: { 'application/problem+json': { schema: Problem } } },
} as const;
