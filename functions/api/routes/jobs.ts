/**
 * /jobs: submit, list, read status, stream results, cancel.
 */
import { Readable } from 'node:stream';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { loadJob } from '../../core/job.ts';
import { JOBS_PREFIX, checkJobId, isJobId } from '../../core/layout.ts';
import type { FetchRecord } from '../../core/record.ts';
import { readResultLines, readResults, recordFilter } from '../../core/results.ts';
import { jobStatus } from '../../core/status.ts';
import type { ApiDeps } from '../deps.ts';
import { problem } from '../problem.ts';
import { Accepted, JobIdParam, JobList, JobStatus, JsonSubmission, Problem, RecordSchema, ResultLinks, problemResponses } from '../schemas.ts';
import { submitFromRequest } from '../submit.ts';
import { validationHook } from '../validation.ts';

const listRoute = createRoute({
  method: 'get',
  path: '/jobs',
  summary: 'List jobs, newest first',
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(20),
      cursor: z.string().optional().openapi({ description: 'the `next` of the previous page' }),
    }),
  },
  responses: { 200: { description: 'A page of jobs', content: { 'application/json': { schema: JobList } } }, ...problemResponses },
});

const statusRoute = createRoute({
  method: 'get',
  path: '/jobs/{id}',
  summary: 'Status of a job',
  request: { params: JobIdParam },
  responses: { 200: { description: 'The status', content: { 'application/json': { schema: JobStatus } } }, ...problemResponses },
});

const resultsRoute = createRoute({
  method: 'get',
  path: '/jobs/{id}/results',
  summary: 'Every record of a job as NDJSON, in input order, streamed',
  request: {
    params: JobIdParam,
    query: z.object({
      ok: z.enum(['true', 'false']).optional().openapi({ description: 'only records with this `ok`' }),
      status: z.string().regex(/^\d{3}$/).optional().openapi({ description: 'only records with this HTTP status' }),
      error: z.string().optional().openapi({ description: 'only records with this error code' }),
      links: z.enum(['true', 'false']).optional().openapi({ description: 'ask for links to the result files (AWS) instead of a stream' }),
    }),
  },
  responses: {
    200: {
      description: 'NDJSON, one record per line; or, on AWS when the results are too large for a response, links to the gzipped result files',
      content: { 'application/x-ndjson': { schema: RecordSchema }, 'application/json': { schema: ResultLinks } },
    },
    ...problemResponses,
  },
});

const cancelRoute = createRoute({
  method: 'delete',
  path: '/jobs/{id}',
  summary: 'Cancel a job: chunks not yet fetched get cancelled records',
  request: { params: JobIdParam },
  responses: {
    202: { description: 'Cancelling; the status follows', content: { 'application/json': { schema: JobStatus } } },
    409: { description: 'The job already ended', content: { 'application/problem+json': { schema: Problem } } },
    ...problemResponses,
  },
});

export function jobsRoutes(deps: ApiDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/jobs',
    summary: 'Submit a list of URLs',
    description:
      'The body is the list: text/plain (one URL per line), application/x-ndjson (one item per line) or application/json ' +
      '({"urls": [...], "options": {...}} or {"upload": ID, "options": {...}}). Options may also be given as query parameters ' +
      '(?concurrency=10&bodies=none&header=x-k:%20v). Invalid input creates nothing.',
    request: {
      query: z.object({ concurrency: z.number().optional(), bodies: z.string().optional() }).passthrough(),
      body: {
        content: {
          'text/plain': { schema: z.string().openapi({ example: 'https://example.com/\nhttps://example.org/\n' }) },
          'application/x-ndjson': { schema: z.string().openapi({ example: '{"url":"https://example.com/","id":"a"}\n' }) },
          'application/json': { schema: JsonSubmission },
        },
      },
    },
    responses: {
      202: { description: 'Accepted; poll the status URL', content: { 'application/json': { schema: Accepted } } },
      413: { description: 'Body too large: use POST /uploads', content: { 'application/problem+json': { schema: Problem } } },
      415: { description: 'Unsupported content type', content: { 'application/problem+json': { schema: Problem } } },
      ...problemResponses,
    },
  });

  app.post('/jobs', async (c) => {
    const submitted = await submitFromRequest(c, deps);
    const status = `/jobs/${submitted.jobId}`;
    c.header('Location', status);
    const { jobId, total, chunks, state } = submitted;
    return c.json({ jobId, status, total, chunks, ...(state === 'planning' ? { state } : {}) }, 202);
  });

  app.openapi(listRoute, async (c) => {
    const { limit, cursor } = c.req.valid('query');
    if (cursor !== undefined) checkJobId(cursor);
    const ids = (await deps.store.listPrefixes(JOBS_PREFIX))
      .map((p) => p.slice(JOBS_PREFIX.length, -1))
      .filter((id) => isJobId(id) && (cursor === undefined || id < cursor))
      .sort()
      .reverse();
    const jobs = [];
    let last: string | undefined;
    for (const id of ids) {
      if (jobs.length === limit) break;
      last = id;
      try {
        jobs.push(await jobStatus(deps.store, id));
      } catch {
        // a folder without job.json is a submission still being planned, or one that failed: not a job
      }
    }
    const more = last !== undefined && ids.indexOf(last) < ids.length - 1;
    return c.json({ jobs, next: more ? last! : null }, 200);
  });

  app.openapi(statusRoute, async (c) => c.json(await jobStatus(deps.store, checkJobId(c.req.valid('param').id)), 200));

  app.openapi(resultsRoute, async (c) => {
    const id = checkJobId(c.req.valid('param').id);
    await loadJob(deps.store, id); // 404 before the stream starts
    const query = c.req.valid('query');
    const links = deps.resultLinks ? await deps.resultLinks(id, query.links === 'true') : null;
    if (links) return c.json(links, 200) as never;
    const filter = recordFilter(query);
    const source = filter
      ? (async function* () {
          for await (const line of readResultLines(deps.store, id)) {
            if (filter(JSON.parse(line) as FetchRecord)) yield Buffer.from(line + '\n');
          }
        })()
      : readResults(deps.store, id);
    const body = Readable.toWeb(Readable.from(source)) as unknown as ReadableStream;
    return c.body(body, 200, { 'content-type': 'application/x-ndjson; charset=utf-8' }) as never;
  });

  app.openapi(cancelRoute, async (c) => {
    const id = checkJobId(c.req.valid('param').id);
    await loadJob(deps.store, id);
    if (!(await deps.cancel(id))) throw problem(409, 'Conflict', `job ${id} already ended`);
    return c.json(await jobStatus(deps.store, id), 202);
  });

  return app;
}
