/**
 * GET /jobs/:id/results: the records in input order, streamed whole (`fanout serve`, unasked) or in
 * pages that fit a Lambda response (a cursor, the next page in a Link header); on AWS, large results
 * as pages of links to their files.
 */
import { Readable } from 'node:stream';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { QueryError } from '../../core/errors.ts';
import { loadJob } from '../../core/job.ts';
import { checkJobId, layout } from '../../core/layout.ts';
import type { ObjectStore } from '../../core/ports.ts';
import { ERROR_CODES, type FetchRecord } from '../../core/record.ts';
import {
  RESULT_PAGE_DEFAULTS,
  checkRecordQuery,
  decodeCursor,
  encodeCursor,
  readResultLines,
  readResultPage,
  readResults,
  recordFilter,
  CHANGE_FILTERS,
} from '../../core/results.ts';
import { jobStatus } from '../../core/status.ts';
import type { ApiDeps, ResultFileLinks, ResultLinks as Links } from '../deps.ts';
import { JobIdParam, RecordSchema, ResultLinks, problemResponses } from '../schemas.ts';
import { validationHook } from '../validation.ts';

const pageHeaders = {
  Link: {
    description: 'the next page, as `</jobs/ID/results?cursor=...>; rel="next"` (filters kept); absent on the last page',
    schema: { type: 'string' as const },
  },
  'Fanout-Next-Cursor': { description: 'the cursor of the next page; absent on the last page', schema: { type: 'string' as const } },
  'Fanout-Complete': {
    description: '`false` while the job runs: the records are those of the chunks finished so far',
    schema: { type: 'string' as const, enum: ['true', 'false'] },
  },
  'Fanout-Done': { description: 'records written so far (the status\'s `done`)', schema: { type: 'integer' as const } },
  'Fanout-Total': { description: 'records the job will have', schema: { type: 'integer' as const } },
};

const resultsRoute = createRoute({
  method: 'get',
  path: '/jobs/{id}/results',
  summary: 'The records of a job as NDJSON, in input order: streamed, or in pages',
  description:
    `Without \`cursor\` or \`limit\`, \`fanout serve\` streams every record. With either, and always on AWS, the answer is one page ` +
    `of at most ${RESULT_PAGE_DEFAULTS.maxRecords} records and ${RESULT_PAGE_DEFAULTS.maxBytes / 1024 / 1024} MiB; the Link header ` +
    `(rel="next") and Fanout-Next-Cursor give the next page, and are absent on the last. A filtered page may hold fewer records, ` +
    `even none: follow the links until there is none. On AWS, large results (or \`links=true\`) are answered with pages of ` +
    `presigned links to the gzipped result files instead (${RESULT_PAGE_DEFAULTS.maxLinks} a page, \`next\` in the body and the headers).`,
  request: {
    params: JobIdParam,
    query: z.object({
      ok: z.enum(['true', 'false']).optional().openapi({ description: 'only records with this `ok`' }),
      status: z
        .string()
        .regex(/^[1-5]\d\d$/, 'must be an HTTP status (100-599)')
        .optional()
        .openapi({ description: 'only records with this HTTP status' }),
      error: z.enum(ERROR_CODES).optional().openapi({ description: 'only records with this error code' }),
      change: z
        .enum(CHANGE_FILTERS)
        .optional()
        .openapi({ description: 'with a baseline (option `since`): only new, unchanged or changed records, or those newly failing or recovered since it' }),
      links: z
        .enum(['true', 'false'])
        .optional()
        .openapi({ description: 'true: links to the result files (AWS) instead of records; false: records, however large the results' }),
      cursor: z.string().optional().openapi({ description: 'where the page starts: a cursor from the previous page (opaque)' }),
      limit: z.coerce
        .number()
        .int()
        .min(1)
        .optional()
        .openapi({ description: `records per page, at most ${RESULT_PAGE_DEFAULTS.maxRecords} (larger values are lowered to the runtime's limit)` }),
    }),
  },
  responses: {
    200: {
      description: 'NDJSON, one record per line (a page, or every record); or, on AWS for large results or links=true, a page of links to the gzipped result files',
      headers: pageHeaders,
      content: { 'application/x-ndjson': { schema: RecordSchema }, 'application/json': { schema: ResultLinks } },
    },
    ...problemResponses,
  },
});

/** One page of links to the result files, from chunk `from` on (a LIST from there, and one signature per file). */
async function linksPage(store: ObjectStore, files: ResultFileLinks, jobId: string, from: number, maxLinks: number): Promise<Links> {
  const prefix = layout.resultsPrefix(jobId);
  const found: { key: string; chunk: number }[] = [];
  let next: string | null = null;
  for await (const key of store.list(prefix, from > 0 ? { startAfter: layout.results(jobId, from - 1) } : {})) {
    const match = /^(\d+)\.ndjson\.gz$/.exec(key.slice(prefix.length));
    if (!match) continue;
    const chunk = Number(match[1]);
    if (found.length === maxLinks) {
      next = encodeCursor('links', { chunk, position: 0 });
      break;
    }
    found.push({ key, chunk });
  }
  const expiresAt = files.expiresAt();
  const signed = await Promise.all(found.map(async (f) => ({ key: f.key, url: await files.sign(f.key), chunk: f.chunk })));
  return { jobId, format: 'ndjson.gz', files: signed, expiresAt, next };
}

export function resultsRoutes(deps: ApiDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });

  app.openapi(resultsRoute, async (c) => {
    const id = checkJobId(c.req.valid('param').id);
    const job = await loadJob(deps.store, id); // 404 before the stream starts
    const query = c.req.valid('query');
    checkRecordQuery(query);
    const cursor = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (cursor && cursor.chunk > job.chunks) throw new QueryError('"cursor" points past the end of this job', 'cursor');

    const status = await jobStatus(deps.store, id);
    const complete = status.state === 'completed' || status.state === 'cancelled';
    c.header('Fanout-Complete', String(complete));
    c.header('Fanout-Done', String(status.done));
    c.header('Fanout-Total', String(status.total));
    const setNext = (next: string | null) => {
      if (next === null) return;
      const q = new URLSearchParams();
      for (const name of ['ok', 'status', 'error', 'change', 'links', 'limit'] as const) if (query[name] !== undefined) q.set(name, String(query[name]));
      q.set('cursor', next);
      c.header('Link', `</jobs/${id}/results?${q}>; rel="next"`);
      c.header('Fanout-Next-Cursor', next);
    };

    const files = deps.resultFiles;
    if (cursor?.kind === 'links' && !files) throw new QueryError('"cursor" is a links cursor, and this API has no result links', 'cursor');
    const wantLinks =
      files !== undefined && (cursor ? cursor.kind === 'links' : query.links === 'true' || (query.links !== 'false' && (await files.prefer(id))));
    if (wantLinks) {
      const page = await linksPage(deps.store, files, id, cursor?.chunk ?? 0, deps.resultPages?.maxLinks ?? RESULT_PAGE_DEFAULTS.maxLinks);
      setNext(page.next);
      return c.json(page, 200) as never;
    }

    const filter = recordFilter(query);
    const ndjson = { 'content-type': 'application/x-ndjson; charset=utf-8' };
    if (!deps.resultPages && cursor === undefined && query.limit === undefined) {
      const source = filter
        ? (async function* () {
            for await (const line of readResultLines(deps.store, id)) {
              if (filter(JSON.parse(line) as FetchRecord)) yield Buffer.from(line + '\n');
            }
          })()
        : readResults(deps.store, id);
      const body = Readable.toWeb(Readable.from(source)) as unknown as ReadableStream;
      return c.body(body, 200, ndjson) as never;
    }
    const max = deps.resultPages ?? RESULT_PAGE_DEFAULTS;
    const page = await readResultPage(
      deps.store,
      id,
      cursor ?? { chunk: 0, position: 0 },
      { maxRecords: Math.min(query.limit ?? max.maxRecords, max.maxRecords), maxBytes: max.maxBytes },
      filter,
    );
    setNext(page.next && encodeCursor('records', page.next));
    return c.body(page.lines.length ? page.lines.join('\n') + '\n' : '', 200, ndjson) as never;
  });

  return app;
}
