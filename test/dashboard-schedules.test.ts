/**
 * The dashboard's schedule page (issue 13): a schedule's runs with success rate, duration and
 * changes, as a chart and a table, in Debian's chromium.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { startServer, type RunningServer } from '../functions/local/serve.ts';
import { tempDir } from './support/tmp.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let origin: Server;
let originUrl: string;
let server: RunningServer;
let browser: Browser;
const bodies = new Map<string, { status: number; body: string }>();

beforeAll(async () => {
  origin = createServer((req, res) => {
    const page = bodies.get(req.url ?? '') ?? { status: 404, body: 'none' };
    res.writeHead(page.status, { 'content-type': 'text/plain' }).end(page.body);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const dataDir = tempDir();
  const file = join(dataDir, 'schedules.json');
  writeFileSync(file, JSON.stringify({ schedules: [{ name: 'prices', expression: 'rate(1 day)', list: 'lists/prices.txt', options: { retries: 0 } }] }));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, workers: 0, guard: new AddressGuard({ blockPrivate: false }), schedulesFile: file });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await new Promise<void>((r) => origin.close(() => r()));
});

describe("a schedule's page", () => {
  it('shows both runs with success rate, duration and changes, and a chart of them', async () => {
    for (let i = 0; i < 4; i++) bodies.set(`/p${i}`, { status: 200, body: `price ${i}` });
    await server.runtime.store.put('lists/prices.txt', [0, 1, 2, 3].map((i) => `${originUrl}/p${i}`).join('\n'));
    const first = await server.schedules!.fire('prices');
    await server.runtime.waitForJob(first.jobId);
    bodies.set('/p1', { status: 200, body: 'price 1 (up)' });
    bodies.set('/p2', { status: 500, body: 'down' });
    const second = await server.schedules!.fire('prices');
    await server.runtime.waitForJob(second.jobId);

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.url}/ui/schedules`);
    await expect.poll(() => page.locator('#schedules-body tr').count(), { timeout: 10_000 }).toBe(1);
    await page.click('#schedules-body a');
    await expect.poll(() => page.locator('#runs-count').textContent(), { timeout: 10_000 }).toBe('2 runs');
    const rows = await page.locator('#runs-body tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    // Newest first: 3 of 4 ok, 1 changed, 1 newly failing.
    expect(rows[0]!.slice(1)).toEqual(['completed', '75%', expect.stringMatching(/^\d+\.\d s$/), '0', '2', '1', '0']);
    expect(rows[1]!.slice(1)).toEqual(['completed', '100%', expect.stringMatching(/ s$/), '–', '–', '–', '–']);
    expect(await page.locator('#runs-body tr').first().getAttribute('data-job-id')).toBe(second.jobId);
    // The chart: one column per run, oldest on the left, the newest red (something newly fails).
    const columns = page.locator('#runs-svg g.run');
    expect(await columns.count()).toBe(2);
    expect(await columns.nth(1).getAttribute('data-job-id')).toBe(second.jobId);
    expect(await columns.nth(1).locator('rect').nth(1).getAttribute('fill')).toBe('#b3261e');
    expect(await page.locator('#runs-svg').getAttribute('aria-label')).toContain('75% ok');
    expect(errors).toEqual([]);
  });
});
