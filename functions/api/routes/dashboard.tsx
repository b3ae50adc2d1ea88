/**
 * The dashboard: server-rendered pages (Hono JSX) that hold no data themselves, and one small
 * script (dashboard-client.ts, served as /ui/app.js) that reads the API with the bearer token the
 * user gives once (kept in sessionStorage, never in a URL). Works the same from `fanout serve` and
 * from the deployed API.
 */
import { Hono } from 'hono';
import type { FC, PropsWithChildren } from 'hono/jsx';
import { DASHBOARD_CLIENT } from './dashboard-client.ts';
import { DASHBOARD_CSS } from './dashboard-style.ts';

const Layout: FC<PropsWithChildren<{ title: string; page: string; jobId?: string; schedule?: string }>> = ({ title, page, jobId, schedule, children }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>{title}</title>
      <link rel="stylesheet" href="/ui/app.css" />
      <link rel="icon" href="data:," />
    </head>
    <body data-page={page} data-job-id={jobId ?? ''} data-schedule={schedule ?? ''}>
      <header>
        <a href="/" class="brand">
          fanout
        </a>
        <nav aria-label="main">
          <a href="/">Jobs</a>
          <a href="/ui/schedules">Schedules</a>
          <a href="/docs">API</a>
        </nav>
      </header>
      <div id="auth" hidden>
        <form id="auth-form" aria-labelledby="auth-title">
          <h2 id="auth-title">This API needs a token</h2>
          <label for="token">Bearer token</label>
          <input id="token" name="token" type="password" autocomplete="off" required />
          <button type="submit">Use token</button>
          <p class="hint">Kept for this browser tab only (sessionStorage), sent as an Authorization header, never put in a URL.</p>
        </form>
      </div>
      <main id="main">{children}</main>
      <p id="error" role="alert" class="error" hidden></p>
      <script type="module" src="/ui/app.js"></script>
    </body>
  </html>
);

const JobsPage: FC = () => (
  <Layout title="fanout: jobs" page="jobs">
    <section aria-labelledby="submit-title">
      <h1 id="submit-title">Submit a list</h1>
      <form id="submit-form">
        <label for="urls">URLs, one per line (or NDJSON)</label>
        <textarea id="urls" name="urls" rows={5} placeholder="https://example.com/"></textarea>
        <label for="file">or a file</label>
        <input id="file" name="file" type="file" accept=".txt,.ndjson,.jsonl,.json,text/plain" />
        <fieldset>
          <legend>Options</legend>
          <label>
            concurrency <input name="concurrency" type="number" min="1" max="10000" value="64" />
          </label>
          <label>
            per host <input name="perHost" type="number" min="1" max="1000" value="8" />
          </label>
          <label>
            timeout ms <input name="timeoutMs" type="number" min="1" value="15000" />
          </label>
          <label>
            retries <input name="retries" type="number" min="0" max="10" value="2" />
          </label>
          <label>
            bodies{' '}
            <select name="bodies">
              <option value="inline">inline</option>
              <option value="none">none</option>
              <option value="store">store</option>
            </select>
          </label>
        </fieldset>
        <button type="submit">Submit</button>
        <p id="submit-result" role="status" aria-live="polite"></p>
      </form>
    </section>
    <section aria-labelledby="jobs-title">
      <h1 id="jobs-title">Jobs</h1>
      <table id="jobs-table">
        <caption class="visually-hidden">Jobs, newest first, updated live</caption>
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">State</th>
            <th scope="col">Progress</th>
            <th scope="col">Done / total</th>
            <th scope="col">Succeeded</th>
            <th scope="col">Failed</th>
            <th scope="col">Throughput</th>
            <th scope="col">Age</th>
          </tr>
        </thead>
        <tbody id="jobs-body"></tbody>
      </table>
    </section>
  </Layout>
);

const JobPage: FC<{ jobId: string }> = ({ jobId }) => (
  <Layout title={`fanout: job ${jobId}`} page="job" jobId={jobId}>
    <h1>
      Job <code>{jobId}</code>
    </h1>
    <section aria-labelledby="progress-title">
      <h2 id="progress-title">Progress</h2>
      <div class="summary">
        <span>
          State: <strong id="state">…</strong>
        </span>
        <span>
          Done: <strong id="done">0</strong> / <strong id="total">0</strong>
        </span>
        <span>
          Succeeded: <strong id="succeeded">0</strong>
        </span>
        <span>
          Failed: <strong id="failed">0</strong>
        </span>
        <span>
          ETA: <strong id="eta">–</strong>
        </span>
      </div>
      <progress id="progress" max="1" value="0" aria-label="done of total"></progress>
      <div class="actions">
        <button id="cancel" type="button">Cancel job</button>
        <button id="download" type="button">Download records (NDJSON)</button>
        <button id="download-failed" type="button">Download failed records</button>
      </div>
    </section>
    <section aria-labelledby="charts-title" class="charts">
      <h2 id="charts-title">Outcomes</h2>
      <figure>
        <figcaption>By status class</figcaption>
        <div id="chart-status"></div>
      </figure>
      <figure>
        <figcaption>By error code</figcaption>
        <div id="chart-errors"></div>
      </figure>
      <figure>
        <figcaption>
          Latency: p50 <strong id="p50">–</strong>, p95 <strong id="p95">–</strong>, p99 <strong id="p99">–</strong>
          <br />
          Wait for a connection: p50 <strong id="q50">–</strong>, p95 <strong id="q95">–</strong> <span id="held"></span>
        </figcaption>
        <div id="chart-latency"></div>
      </figure>
      <figure>
        <figcaption>Throughput over time (URLs started per second)</figcaption>
        <div id="chart-throughput"></div>
      </figure>
    </section>
    <section aria-labelledby="slowest-title">
      <h2 id="slowest-title">Slowest URLs</h2>
      <ol id="slowest"></ol>
    </section>
    <section aria-labelledby="records-title">
      <h2 id="records-title">Records</h2>
      <form id="filters" aria-label="Filter records">
        <label>
          ok{' '}
          <select name="ok">
            <option value="">any</option>
            <option value="true">ok</option>
            <option value="false">failed</option>
          </select>
        </label>
        <label>
          status <input name="status" inputmode="numeric" size={4} />
        </label>
        <label>
          error{' '}
          <select name="error">
            <option value="">any</option>
          </select>
        </label>
        <label>
          host <input name="host" size={20} />
        </label>
      </form>
      <p id="records-count" role="status" aria-live="polite"></p>
      <table id="records-table">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">URL</th>
            <th scope="col">Status</th>
            <th scope="col">Error</th>
            <th scope="col">Attempts</th>
            <th scope="col">ms</th>
            <th scope="col">Bytes</th>
          </tr>
        </thead>
        <tbody id="records-body"></tbody>
      </table>
      <nav aria-label="Record pages" class="pager">
        <button id="prev" type="button">Previous</button>
        <span id="page"></span>
        <button id="next" type="button">Next</button>
      </nav>
    </section>
  </Layout>
);

const SchedulesPage: FC = () => (
  <Layout title="fanout: schedules" page="schedules">
    <h1>Schedules</h1>
    <table id="schedules-table">
      <thead>
        <tr>
          <th scope="col">Schedule</th>
          <th scope="col">Expression</th>
          <th scope="col">Next run</th>
          <th scope="col">Last run</th>
        </tr>
      </thead>
      <tbody id="schedules-body"></tbody>
    </table>
  </Layout>
);

/** A schedule's runs: success rate, duration and changes, as a chart (oldest left) and a table (newest first). */
const SchedulePage: FC<{ name: string }> = ({ name }) => (
  <Layout title={`fanout: schedule ${name}`} page="schedule" schedule={name}>
    <h1>
      Schedule <code>{name}</code>
    </h1>
    <section aria-labelledby="runs-chart-title">
      <h2 id="runs-chart-title">Runs over time</h2>
      <figure>
        <figcaption>Success rate per run (bar), duration and changes (± new or changed, ✗ newly failing) below; red: something newly fails</figcaption>
        <div id="runs-chart"></div>
      </figure>
    </section>
    <section aria-labelledby="runs-title">
      <h2 id="runs-title">Runs</h2>
      <p id="runs-count" role="status" aria-live="polite"></p>
      <table id="runs-table">
        <thead>
          <tr>
            <th scope="col">Started</th>
            <th scope="col">State</th>
            <th scope="col">Success rate</th>
            <th scope="col">Duration</th>
            <th scope="col">New</th>
            <th scope="col">Changed</th>
            <th scope="col">Newly failing</th>
            <th scope="col">Recovered</th>
          </tr>
        </thead>
        <tbody id="runs-body"></tbody>
      </table>
    </section>
  </Layout>
);

export function dashboardRoutes(): Hono {
  const app = new Hono();
  app.get('/', (c) => c.html(<JobsPage />));
  app.get('/ui/jobs/:id', (c) => c.html(<JobPage jobId={c.req.param('id').replace(/[^0-9a-f-]/g, '')} />));
  app.get('/ui/schedules', (c) => c.html(<SchedulesPage />));
  app.get('/ui/schedules/:name', (c) => c.html(<SchedulePage name={c.req.param('name').replace(/[^A-Za-z0-9_.\-]/g, '').slice(0, 64)} />));
  app.get('/ui/app.js', (c) => c.body(DASHBOARD_CLIENT, 200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' }));
  app.get('/ui/app.css', (c) => c.body(DASHBOARD_CSS, 200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'no-cache' }));
  return app;
}
