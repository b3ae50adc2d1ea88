import autocannon from 'autocannon';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from './support/cli.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
let server: ServeProcess;
beforeAll(async () => {
  origin = await startOrigin();
  server = await startServe(['--data-dir', join(tempDir(), 'data'), '--workers', '1'], { FANOUT_ALLOW_CIDRS: '127.0.0.1/32' });
});
afterAll(async () => {
  await server.stop();
  await origin.close();
});

async function status(jobId: string) {
  const res = await request(`${server.url}/jobs/${jobId}`);
  return (await res.body.json()) as { state: string; done: number; total: number };
}

async function waitDone(jobId: string) {
  for (let i = 0; i < 600; i++) {
    const s = await status(jobId);
    if (s.state === 'completed') return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${jobId} did not complete`);
}

describe('load on the API while a job runs (bounded, loopback only)', () => {
  it('status polling and submissions from hundreds of clients: no errors, nothing lost', async () => {
    const urls = Array.from({ length: 3000 }, (_, i) => `${origin.url}/delay?ms=20&l=${i}`).join('\n');
    const submitted = await request(`${server.url}/jobs?concurrency=50&perHost=50`, { method: 'POST', body: urls, headers: { 'content-type': 'text/plain' } });
    const { jobId } = (await submitted.body.json()) as { jobId: string };

    const polling = await autocannon({ url: `${server.url}/jobs/${jobId}`, connections: 200, duration: 3 });
    const accepted: string[] = [];
    const submissions = await autocannon({
      url: `${server.url}/jobs`,
      connections: 100,
      amount: 300,
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: `${origin.url}/ok?load=1`,
      setupClient: (client) => client.on('body', (body: Buffer) => accepted.push(JSON.parse(body.toString()).jobId)),
    });
    console.log(
      `status polling: ${polling.requests.total} requests, ${Math.round(polling.requests.average)} req/s, p99 ${polling.latency.p99} ms; ` +
        `submissions: ${submissions.requests.total} requests, p99 ${submissions.latency.p99} ms`,
    );
    for (const result of [polling, submissions]) {
      expect(result.errors).toBe(0);
      expect(result.timeouts).toBe(0);
      expect(result.non2xx).toBe(0);
    }
    expect(accepted).toHaveLength(300);
    expect(new Set(accepted).size).toBe(300);

    expect(await waitDone(jobId)).toMatchObject({ done: 3000, total: 3000 });
    for (const id of accepted) expect(await waitDone(id)).toMatchObject({ done: 1, total: 1 });
  }, 120_000);
});
