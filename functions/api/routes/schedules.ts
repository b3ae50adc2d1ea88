/**
 * /schedules: the schedules this runtime loaded, with their next and last run, and each schedule's
 * runs, newest first, a page at a time (core/runs.ts: one LIST page and one GET per run).
 */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { NotFoundError } from '../../core/errors.ts';
import { checkScheduleName } from '../../core/layout.ts';
import { listRuns, RUNS_DEFAULTS } from '../../core/runs.ts';
import { describeSchedules } from '../../core/schedules.ts';
import type { ApiDeps } from '../deps.ts';
import { problemResponses, RunsPage, ScheduleInfo } from '../schemas.ts';
import { validationHook } from '../validation.ts';

const listRoute = createRoute({
  method: 'get',
  path: '/schedules',
  summary: 'The schedules, with their next and last run',
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'The schedules', content: { 'application/json': { schema: z.object({ schedules: z.array(ScheduleInfo) }) } } },
    ...problemResponses,
  },
});

const runsRoute = createRoute({
  method: 'get',
  path: '/schedules/{name}/runs',
  summary: "A schedule's runs, newest first, with state, counts, duration and change counts",
  security: [{ bearer: [] }],
  request: {
    params: z.object({ name: z.string().openapi({ example: 'nightly' }) }),
    query: z.object({
      limit: z.coerce.number().int().min(1).max(RUNS_DEFAULTS.maxPageSize).optional().openapi({ description: `runs per page (default ${RUNS_DEFAULTS.pageSize})` }),
      cursor: z.string().optional().openapi({ description: 'the `next` of the previous page' }),
    }),
  },
  responses: { 200: { description: 'A page of runs', content: { 'application/json': { schema: RunsPage } } }, ...problemResponses },
});

export function schedulesRoutes(deps: ApiDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });
  const loaded = () => deps.schedules?.() ?? { schedules: [] };

  app.openapi(listRoute, async (c) => {
    const { schedules, nextRuns } = loaded();
    return c.json({ schedules: await describeSchedules(deps.store, schedules, nextRuns) }, 200);
  });

  app.openapi(runsRoute, async (c) => {
    const name = checkScheduleName(c.req.valid('param').name);
    const { limit, cursor } = c.req.valid('query');
    // Runs of a schedule removed from the file stay listed; a name never used is a 404.
    const page = await listRuns(deps.store, name, { limit, cursor });
    if (page.runs.length === 0 && cursor === undefined && !loaded().schedules.some((s) => s.name === name)) {
      throw new NotFoundError(`no schedule ${name}`);
    }
    return c.json(page, 200);
  });

  return app;
}
