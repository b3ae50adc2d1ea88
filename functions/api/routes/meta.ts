/**
 * Liveness, the OpenAPI document and its browsable form.
 */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** Swagger UI's files served under /docs/, with their media types. */
export const SWAGGER_ASSETS: Record<string, string> = {
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
};

/**
 * Where Swagger UI's files are on this machine: beside the built CLI (build/cli/swagger-ui, copied
 * by scripts/build-cli.ts), else the swagger-ui-dist package (running from the sources). Undefined
 * where neither is (a Lambda bundle): /docs then loads them from a CDN.
 *
 * @example
 * swaggerAssetsDir() // '/usr/lib/node_modules/fanout/build/cli/swagger-ui'
 */
export function swaggerAssetsDir(from: string = import.meta.url): string | undefined {
  try {
    const beside = fileURLToPath(new URL('./swagger-ui/', from));
    if (existsSync(join(beside, 'swagger-ui.css'))) return beside;
    return dirname(createRequire(from).resolve('swagger-ui-dist/package.json'));
  } catch {
    return undefined;
  }
}

/** The /docs page over local assets: no request leaves the machine, so it works offline. */
function docsPage(): string {
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
    '<title>fanout API</title><link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" href="data:,"></head>',
    '<body><div id="swagger-ui"></div><script src="/docs/swagger-ui-bundle.js"></script>',
    "<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });</script>",
    '</body></html>',
  ].join('\n');
}

/** Serves /openapi.json and /docs for the app given (call after every route is mounted). */
export function docsRoutes(api: OpenAPIHono, assetsDir: string | undefined = swaggerAssetsDir()): OpenAPIHono {
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
  if (!assetsDir) {
    app.get('/docs', swaggerUI({ url: '/openapi.json' }));
    return app;
  }
  const cache = new Map<string, Promise<Buffer>>();
  app.get('/docs', (c) => c.html(docsPage()));
  app.get('/docs/:file', async (c) => {
    const file = c.req.param('file');
    const type = SWAGGER_ASSETS[file];
    if (!type) return c.notFound();
    let body = cache.get(file);
    if (!body) {
      // A failed read (the file briefly gone during a reinstall) is not kept: the next request reads again.
      body = readFile(join(assetsDir, file)).catch((error: unknown) => {
        cache.delete(file);
        throw error;
      });
      cache.set(file, body);
    }
    return c.body(new Uint8Array(await body), 200, { 'content-type': type, 'cache-control': 'public, max-age=86400' });
  });
  return app;
}
