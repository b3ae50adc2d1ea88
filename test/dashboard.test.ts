import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from './support/cli.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

/** Debian's chromium (.ci/run installs it); never a downloaded browser. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const TOKEN = 'dashboard-test-token';

let origin: Origin;
let server: ServeProcess;
let browser: Browser;
const consoleErrors: string[] = [];

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  origin = await startOrigin();
  server = await startServe(['--data-dir', join(tempDir(), 'data')], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32', FANOUT_TOKEN: TOKEN });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await origin?.close();
});

async function openPage(path: string): Promise<Page> {
  const page = await browser.newPage();
  page.on('console', (m) => {
    // The first API call answers 401 before the token is given: the browser logs that, by design.
    if (m.type() === 'error' && !/401/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${server.url}${path}`);
  return page;
}

async function giveToken(page: Page) {
  await page.getByLabel('Bearer token').fill(TOKEN);
  await page.getByRole('button', { name: 'Use token' }).click();
}

async function apiStatus(jobId: string) {
  const res = await request(`${server.url}/jobs/${jobId}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return (await res.body.json()) as Record<string, unknown> & { state: string; done: number; succeeded: number; failed: number; total: number };
}

describe('the dashboard in a real headless Chromium', () => {
  let jobId: string;

  it('asks for the token once, submits a pasted list, and shows the job live in the list', async () => {
    const page = await openPage('/');
    await giveToken(page);
    const urls = [
      ...Array.from({ length: 40 }, (_, i) => `${origin.url}/delay?ms=${50 + (i % 5) * 40}&d=${i}`),
      `${origin.url}/status?code=404&d=x`,
      `${origin.url}/status?code=500&d=y`,
      `${origin.url}/reset?d=z`,
    ];
    await page.getByLabel('URLs, one per line (or NDJSON)').fill(urls.join('\n'));
    await page.locator('input[name=concurrency]').fill('4');
    await page.locator('input[name=retries]').fill('0');
    await page.getByRole('button', { name: 'Submit' }).click();
    await expect.poll(() => page.locator('#submit-result').textContent()).toMatch(/Submitted job/);
    jobId = /job ([0-9a-f-]{36})/.exec((await page.locator('#submit-result').textContent())!)![1]!;
    const row = page.locator(`tr[data-job-id="${jobId}"]`);
    await row.waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'jobs-running.png'), fullPage: true });
    // the row updates by itself until the job completes
    await expect.poll(() => row.locator('td').nth(1).textContent(), { timeout: 20_000 }).toBe('completed');
    expect(await row.locator('.done').textContent()).toBe('43 / 43');
    await page.screenshot({ path: join(ARTIFACTS, 'jobs-completed.png'), fullPage: true });
    await page.close();
  }, 60_000);

  it('the job page shows the same counts as the status endpoint, and the failed URLs in two clicks', async () => {
    const page = await openPage('/');
    await giveToken(page);
    await page.locator(`tr[data-job-id="${jobId}"] a`).click(); // click 1: the job
    await expect.poll(() => page.locator('#state').textContent()).toBe('completed');
    const status = await apiStatus(jobId);
    expect(await page.locator('#done').textContent()).toBe(String(status.done));
    expect(await page.locator('#succeeded').textContent()).toBe(String(status.succeeded));
    expect(await page.locator('#failed').textContent()).toBe(String(status.failed));
    await expect.poll(() => page.locator('#records-count').textContent()).toBe('43 of 43 records');
    await page.locator('#filters select[name=ok]').selectOption('false'); // click 2: the failed ones
    await expect.poll(() => page.locator('#records-count').textContent()).toBe('3 of 43 records');
    const failedUrls = await page.locator('#records-body td.url').allTextContents();
    expect(failedUrls.sort()).toEqual([`${origin.url}/reset?d=z`, `${origin.url}/status?code=404&d=x`, `${origin.url}/status?code=500&d=y`]);
    await page.locator('#filters select[name=ok]').selectOption('');
    await page.locator('#filters input[name=status]').fill('404');
    await expect.poll(() => page.locator('#records-count').textContent()).toBe('1 of 43 records');
    await page.locator('#filters input[name=status]').fill('');
    await page.locator('#filters select[name=error]').selectOption('reset');
    await expect.poll(() => page.locator('#records-count').textContent()).toBe('1 of 43 records');
    await page.locator('#filters select[name=error]').selectOption('');
    await page.locator('#filters input[name=host]').fill('nowhere.test');
    await expect.poll(() => page.locator('#records-count').textContent()).toBe('0 of 43 records');
    await page.locator('#filters input[name=host]').fill('');
    expect(await page.locator('#chart-status svg').getAttribute('aria-label')).toContain('2xx: 40');
    expect(await page.locator('#slowest li').count()).toBe(10);
    await page.screenshot({ path: join(ARTIFACTS, 'job-page.png'), fullPage: true });
    await page.close();
  }, 60_000);

  it('cancels a running job from its page', async () => {
    const urls = Array.from({ length: 60 }, (_, i) => `${origin.url}/hang?c=${i}`).join('\n');
    const res = await request(`${server.url}/jobs?timeoutMs=60000&concurrency=5`, {
      method: 'POST',
      body: urls,
      headers: { 'content-type': 'text/plain', authorization: `Bearer ${TOKEN}` },
    });
    const { jobId: hanging } = (await res.body.json()) as { jobId: string };
    const page = await openPage(`/ui/jobs/${hanging}`);
    await giveToken(page);
    await expect.poll(() => page.locator('#state').textContent()).toMatch(/queued|running/);
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await expect.poll(() => page.locator('#state').textContent(), { timeout: 15_000 }).toBe('cancelled');
    expect(await apiStatus(hanging)).toMatchObject({ state: 'cancelled', done: 60 });
    await page.screenshot({ path: join(ARTIFACTS, 'job-cancelled.png'), fullPage: true });
    await page.close();
  }, 60_000);

  it('logged no console errors and put no token in any URL', async () => {
    expect(consoleErrors).toEqual([]);
    expect(server.output()).not.toContain(TOKEN);
  });
});
