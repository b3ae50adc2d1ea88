/**
 * Liveness, the OpenAPI document and its browsable form.
 */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import { VERSION } from '../../core/version.ts';

const healthRoute = createRoute({
  method: 'get',
  path: '/health',
  summary: 'Liveness (no authentication)',
  responses: {
    200: {
      description: 'Up',
      content: { 'application/json': { schema: z.object({ status: z.literal('ok'), version: z.string() }) } },
    },
  },
});

export function healthRoutes(): OpenAPIHono {
  const app = new OpenAPIHono();
  app.openapi(healthRoute, (c) => c.json({ status: 'ok' as const, version: VERSION }, 200));
  return app;
}

/** Serves /openapi.json and /docs for the app given (call after every route is mounted). */
export function docsRoutes(api: OpenAPIHono): OpenAPIHono {
  const app = new OpenAPIHono();
  app.get('/openapi.json', (c) =>
    c.json(
      api.getOpenAPI31Document({
        openapi: '3.1.0',
        info: {
          title: 'fanout',
          version: VERSION,
          description: 'Fetch ten or ten million URLs; exactly one result record per URL.',
        },
        security: [{ bearer: [] }],
      }),
    ),
  );
  app.get('/docs', swaggerUI({ url: '/openapi.json' }));
  return app;
}
