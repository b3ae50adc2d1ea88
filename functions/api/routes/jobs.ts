/**
 * /jobs: submit, list, read status, cancel (results are in results.ts).
 */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { loadJob } from '../../core/job.ts';
import { JOBS_PREFIX, checkJobId, isJobId } from '../../core/layout.ts';
import { callbackState } from '../../core/callback.ts';
import { jobStatus, readManifest, type JobStatus as Status } from '../../core/status.ts';
import type { ApiDeps } from '../deps.ts';
import { problem } from '../problem.ts';
import { Accepted, JobIdParam, JobList, JobOptions, JobStatus, JsonSubmission, Problem, problemResponses } from '../schemas.ts';
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

const cancelRoute = createRoute({
  method: 'delete',
  path: '/jobs/{id}',
  summary: 'Cancel a job: chunks not yet fetched get cancelled records',
  description:
    'Waits up to a few seconds (CANCEL_ROUTE_DEFAULTS.settleMs) for the job to end, so the answer says what the cancel did: ' +
    '200 with the final status when the job ended cancelled, 202 with the current status when it is still stopping, ' +
    '409 when it had already ended, or ended completed because every URL had been fetched before the cancel arrived.',
  request: { params: JobIdParam },
  responses: {
    200: { description: 'Cancelled: the job ended; the final status', content: { 'application/json': { schema: JobStatus } } },
    202: { description: 'Cancelling; the status follows', content: { 'application/json': { schema: JobStatus } } },
    409: { description: 'The job already ended (completed or cancelled): nothing was cancelled', content: { 'application/problem+json': { schema: Problem } } },
    ...problemResponses,
  },
});

/** DELETE /jobs/{id} defaults, stated once. */
export const CANCEL_ROUTE_DEFAULTS = {
  /**
   * How long DELETE waits for the job to end before answering 202: a cancel that lands as the last
   * chunk is written ends `completed`, and the answer must say so instead of claiming a cancel.
   */
  settleMs: 3_000,
  /** How often it looks for the manifest meanwhile. */
  pollMs: 50,
} as const;

/** The manifest's state once the job ends within `ms`, else null. */
async function endedWithin(deps: ApiDeps, id: string, ms: number): Promise<string | null> {
  const until = Date.now() + ms;
  for (;;) {
    const manifest = await readManifest(deps.store, id);
    if (manifest) return manifest.state;
    if (Date.now() >= until) return null;
    await new Promise((r) => setTimeout(r, CANCEL_ROUTE_DEFAULTS.pollMs));
  }
}

/** A job list page holds at most this much JSON (its statuses are capped by {@link capFiles}). */
const JOB_LIST_MAX_BYTES = 4 * 1024 * 1024;
/** A status lists at most this many result files (~70 bytes each); the links form pages through all. */
const STATUS_FILES_MAX = 1_000;

/** A status with its result-file list cut to {@link STATUS_FILES_MAX}, saying how many were left out. */
function capFiles(status: Status): Status {
  const files = status.results.files;
  if (files.length <= STATUS_FILES_MAX) return status;
  return { ...status, results: { ...status.results, files: files.slice(0, STATUS_FILES_MAX), filesOmitted: files.length - STATUS_FILES_MAX } as Status['results'] };
}

export function jobsRoutes(deps: ApiDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/jobs',
    summary: 'Submit a list of URLs',
    description:
      'The body is the list: text/plain (one URL per line), application/x-ndjson (one item per line), text/csv (a header row ' +
      'with a url column, or the column named by ?urlColumn=; an id column and other columns are kept) or application/json ' +
      '({"urls": [...], "options": {...}} or {"upload": ID, "options": {...}}). Options may also be given as query parameters ' +
      '(?concurrency=10&bodies=none&header=x-k:%20v). Invalid input creates nothing.',
    request: {
      // Every job option, with its range, default and help, straight from the options schema.
      query: JobOptions.partial()
        .omit({ headers: true, headerEnv: true })
        .extend({
          header: z.string().optional().openapi({ description: 'a request header "name: value" (repeatable)' }),
          headerEnv: z.string().optional().openapi({ description: 'a header from the worker\'s environment "name=VARIABLE" (repeatable)' }),
          urlColumn: z.string().optional().openapi({ description: 'with text/csv: the column holding the URL (default url)' }),
        }),
      body: {
        content: {
          'text/plain': { schema: z.string().openapi({ example: 'https://example.com/\nhttps://example.org/\n' }) },
          'application/x-ndjson': { schema: z.string().openapi({ example: '{"url":"https://example.com/","id":"a"}\n' }) },
          'text/csv': { schema: z.string().openapi({ example: 'url,id,note\nhttps://example.com/,a,home page\n' }) },
          'application/json': { schema: JsonSubmission },
        },
      },
    },
    responses: {
      202: { description: 'Accepted; poll the status URL', content: { 'application/json': { schema: Accepted } } },
      413: { description: 'Body too large: use POST /uploads', content: { 'application/problem+json': { schema: Problem } } },
      415: { description: 'Unsupported content type', content: { 'application/problem+json': { schema: Problem } } },
      507: { description: 'The store is full: nothing was created', content: { 'application/problem+json': { schema: Problem } } },
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
    const started = Date.now();
    const { limit, cursor } = c.req.valid('query');
    if (cursor !== undefined) checkJobId(cursor);
    const ids = (await deps.store.listPrefixes(JOBS_PREFIX))
      .map((p) => p.slice(JOBS_PREFIX.length, -1))
      .filter((id) => isJobId(id) && (cursor === undefined || id < cursor))
      .sort()
      .reverse();
    const jobs: Status[] = [];
    let bytes = 0;
    let next: string | null = null;
    for (const id of ids) {
      // A page also ends once half the runtime's budget is spent (each status costs a few requests).
      if (jobs.length === limit || (deps.budgetMs !== undefined && jobs.length > 0 && Date.now() - started >= deps.budgetMs / 2)) {
        next = jobs.at(-1)!.jobId;
        break;
      }
      let status: Status;
      try {
        status = capFiles(await jobStatus(deps.store, id));
      } catch {
        continue; // a folder without job.json is a submission still being planned, or one that failed: not a job
      }
      // A page stays far below a Lambda response's 6 MB, however large each job's status.
      bytes += JSON.stringify(status).length;
      if (jobs.length > 0 && bytes > JOB_LIST_MAX_BYTES) {
        next = jobs.at(-1)!.jobId;
        break;
      }
      jobs.push(status);
    }
    return c.json({ jobs, next }, 200);
  });

  app.openapi(statusRoute, async (c) => {
    const id = checkJobId(c.req.valid('param').id);
    const status = capFiles(await jobStatus(deps.store, id));
    // One more read, for jobs with a callback only (job.json is cached).
    const ended = status.state === 'completed' || status.state === 'cancelled';
    const callback = ended && (await loadJob(deps.store, id)).options.callbackUrl ? await callbackState(deps.store, id) : null;
    return c.json({ ...status, ...(callback ? { callback } : {}) }, 200);
  });

  app.openapi(cancelRoute, async (c) => {
    const id = checkJobId(c.req.valid('param').id);
    await loadJob(deps.store, id);
    if (!(await deps.cancel(id))) {
      const state = (await readManifest(deps.store, id))?.state ?? 'ended';
      throw problem(409, 'Conflict', `job ${id} already ended (${state}): nothing was cancelled`);
    }
    const state = await endedWithin(deps, id, CANCEL_ROUTE_DEFAULTS.settleMs);
    // Every URL had been fetched when the marker landed: the job completed, nothing was cancelled.
    if (state === 'completed') throw problem(409, 'Conflict', `job ${id} already ended (completed): every URL had been fetched before the cancel arrived, nothing was cancelled`);
    return c.json(capFiles(await jobStatus(deps.store, id)), state ? 200 : 202);
  });

  return app;
}
