/**
 * The HTTP API: one Hono app, composed from small route groups, identical in `fanout serve` and on
 * Lambda. Runtimes hand it their ports through {@link ApiDeps}.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { requireToken } from './auth.ts';
import { API_LIMITS, type ApiDeps } from './deps.ts';
import { onError, problem, problemResponse } from './problem.ts';
import { dashboardRoutes } from './routes/dashboard.tsx';
import { jobsRoutes } from './routes/jobs.ts';
import { docsRoutes, healthRoutes } from './routes/meta.ts';
import { resultsRoutes } from './routes/results.ts';
import { schedulesRoutes } from './routes/schedules.ts';
import { uploadsRoutes } from './routes/uploads.ts';

/**
 * Builds the app.
 *
 * @example
 * const app = createApp({ store, queue, token: () => process.env.FANOUT_TOKEN, uploads, cancel });
 * const res = await app.request('/health');
 */
export function createApp(deps: ApiDeps): OpenAPIHono {
  const maxRequestBytes = deps.limits?.maxRequestBytes ?? API_LIMITS.maxRequestBytes;
  const app = new OpenAPIHono();
  app.onError(onError);
  app.notFound((c) => problemResponse(404, 'Not found', `no route ${c.req.method} ${new URL(c.req.url).pathname}`));

  // Data lives under /jobs and /uploads: those need the token. The dashboard shell and the API
  // description hold none (and a browser cannot send a bearer token when it navigates).
  // `/jobs/*` also matches `/jobs` itself: one registration a prefix, so a request is checked once.
  const auth = requireToken(deps.token);
  app.use('/jobs/*', auth);
  app.use('/schedules/*', auth);
  app.use('/uploads/*', auth);
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });

  app.post(
    '/jobs',
    bodyLimit({
      maxSize: maxRequestBytes,
      onError: () => {
        throw problem(413, 'Payload too large', `a request body may hold at most ${maxRequestBytes} bytes: send larger lists through POST /uploads`);
      },
    }),
  );

  app.route('/', healthRoutes());
  app.route('/', jobsRoutes(deps));
  app.route('/', resultsRoutes(deps));
  app.route('/', uploadsRoutes(deps));
  app.route('/', schedulesRoutes(deps));
  app.route('/', dashboardRoutes());
  app.route('/', docsRoutes(app));
  return app;
}
