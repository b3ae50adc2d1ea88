import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import { CALLBACK_ATTEMPTS, CALLBACK_DEFAULTS, callbackState, readCallbackOutbox } from '../functions/core/callback.ts';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { MemoryLedger } from '../functions/core/ledger.ts';
import { handleMessage } from '../functions/core/messages.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { planUrls } from './support/jobs.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

// Defect 11 of the tryout: 5 attempts in 7.5 s, so a receiver down for 10 s never heard.
const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] });
let origin: Origin;
useOrigin((started) => (origin = started));

/** A receiver that is down (503) for its first `downFor` requests, then up. */
async function receiver(downFor: number) {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(++hits <= downFor ? 503 : 200).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, hits: () => hits, close: () => new Promise((r) => server.close(r)) };
}

describe('the completion callback', () => {
  it('spreads its attempts over about 6 minutes, stated once', () => {
    const total = CALLBACK_DEFAULTS.backoffMs.reduce((a, b) => a + b, 0);
    expect(CALLBACK_ATTEMPTS).toBe(5);
    expect(total).toBeGreaterThanOrEqual(5 * 60_000);
    expect(Math.max(...CALLBACK_DEFAULTS.backoffMs)).toBeLessThanOrEqual(900_000); // SQS DelaySeconds
  });

  it('a failed attempt is re-sent as a delayed message, not waited for in the handler', async () => {
    const hook = await receiver(1);
    const fetcher = new Fetcher(guard);
    try {
      const store = new LocalStore(tempDir());
      const queue = new MemoryQueue();
      const deps = { store, fetcher, queue, ledger: new MemoryLedger(), cancelPollMs: 3_600_000 };
      const job = await planUrls(store, queue, [`${origin.url}/ok`], { callbackUrl: hook.url });
      // the chunk, then the first callback attempt
      for (let i = 0; i < 2; i++) {
        const [m] = await queue.receive({ max: 1, waitMs: 1_000 });
        await handleMessage(deps, m!.body, { receiveCount: 1, maxReceiveCount: 5 });
        await queue.delete(m!.receipt);
      }
      expect(hook.hits()).toBe(1);
      const entry = await readCallbackOutbox(store, job.jobId);
      expect(entry).toMatchObject({ state: 'pending', attempts: 1, status: 503 });
      expect(Date.parse(entry!.nextAttemptAt!)).toBeGreaterThan(Date.now() + 500);
      expect(await callbackState(store, job.jobId)).toMatchObject({ state: 'pending', attempts: 1, lastError: 'HTTP 503' });
      // The next attempt waits in the queue, hidden for the first backoff (1 s).
      expect(queue.size).toBe(1);
      expect(await queue.receive({ max: 1 })).toEqual([]);
      const [later] = await queue.receive({ max: 1, waitMs: 3_000 });
      await handleMessage(deps, later!.body, { receiveCount: 1, maxReceiveCount: 5 });
      expect(hook.hits()).toBe(2);
      expect(await readCallbackOutbox(store, job.jobId)).toMatchObject({ state: 'delivered', attempts: 2, status: 200 });
    } finally {
      await fetcher.close();
      await hook.close();
    }
  });

  it('a receiver down for the first attempts hears once it is up; GET /jobs/:id shows the callback', async () => {
    const hook = await receiver(3);
    const runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard, callbackRetryBaseMs: 50 });
    const app = createApp({ store: runtime.store, queue: runtime.queue, token: () => undefined, uploads: { receivesPut: true, target: async () => ({ url: '', method: 'PUT', headers: {}, expiresAt: null }) }, cancel: (j) => runtime.cancel(j) });
    try {
      runtime.start();
      const job = await planUrls(runtime.store, runtime.queue, [`${origin.url}/ok`], { callbackUrl: hook.url });
      await runtime.waitForJob(job.jobId);
      for (let i = 0; i < 250 && (await readCallbackOutbox(runtime.store, job.jobId))?.state !== 'delivered'; i++) await new Promise((r) => setTimeout(r, 20));
      expect(hook.hits()).toBe(4);
      const status = (await (await app.request(`http://fanout.test/jobs/${job.jobId}`)).json()) as { callback: unknown };
      expect(status.callback).toEqual({ state: 'delivered', attempts: 4, lastError: null, nextAttemptAt: null });
    } finally {
      await runtime.stop();
      await hook.close();
    }
  });
});
