/**
 * GET /: the dashboard. For now a small page pointing at the API; the full dashboard replaces it.
 */
import { Hono } from 'hono';
import { html } from 'hono/html';

export function dashboardRoutes(): Hono {
  const app = new Hono();
  app.get('/', (c) =>
    c.html(html`<!doctype html>
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <title>fanout</title>
        </head>
        <body>
          <main>
            <h1>fanout</h1>
            <p>The API is up. See <a href="/docs">the API documentation</a> and <a href="/jobs">the jobs</a>.</p>
          </main>
        </body>
      </html>`),
  );
  return app;
}
