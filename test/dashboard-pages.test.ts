/**
 * The dashboard's job page follows result pages (issue 10): against an API that pages (as on AWS),
 * it still shows every record of the job.
 */
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let origin: Origin;
let runtime: EmbeddedRuntime;
let server: ServerType;
let base: string;
let browser: Browser;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  origin = await startOrigin();
  runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }) });
  runtime.start();
  app = createApp({
    store: runtime.store,
    queue: runtime.queue,
    token: () => undefined,
    uploads: { receivesPut: true, target: async () => ({ url: '', method: 'PUT', headers: {}, expiresAt: null }) },
    cancel: (id) => runtime.cancel(id),
    resultPages: { maxRecords: 4, maxBytes: 1 << 20 },
  });
  server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => server.close(() => r()));
  await runtime.stop();
  await origin.close();
});

describe('the dashboard over a paging API', () => {
  it('shows every record of a job whose results come in pages of 4', async () => {
    const urls = Array.from({ length: 23 }, (_, i) => `${origin.url}/ok?p=${i}`);
    const res = await app.request('/jobs?chunkSize=5', { method: 'POST', body: urls.join('\n'), headers: { 'content-type': 'text/plain' } });
    const { jobId } = (await res.json()) as { jobId: string };
    await expect
      .poll(async () => ((await (await app.request(`/jobs/${jobId}`)).json()) as { state: string }).state, { timeout: 10_000 })
      .toBe('completed');
    // the API itself answers a page of 4
    expect((await (await app.request(`/jobs/${jobId}/results`)).text()).trim().split('\n')).toHaveLength(4);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/ui/jobs/${jobId}`);
    await expect.poll(() => page.locator('#records-count').textContent(), { timeout: 10_000 }).toBe('23 of 23 records');
    expect(errors).toEqual([]);
  });
});
