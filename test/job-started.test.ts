import { describe, expect, it } from 'vitest';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { MemoryLedger } from '../functions/core/ledger.ts';
import { handleMessage } from '../functions/core/messages.ts';
import type { ObjectStore } from '../functions/core/ports.ts';
import { jobStatus } from '../functions/core/status.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { planUrls } from './support/jobs.ts';
import { useOrigin } from './support/origin-hooks.ts';
import type { Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

// Defect 15 of the tryout: a job read `queued, done 0` for 28 s while its chunks were fetched.
const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] });
let origin: Origin;
useOrigin((started) => (origin = started));

describe('a job is running from the first chunk a worker receives', () => {
  it('reads running while its only chunk is still being fetched', async () => {
    const runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard });
    try {
      const job = await planUrls(runtime.store, runtime.queue, [`${origin.url}/hang`], { timeoutMs: 60_000 });
      expect((await jobStatus(runtime.store, job.jobId)).state).toBe('queued');
      runtime.start();
      let status = await jobStatus(runtime.store, job.jobId);
      for (let i = 0; i < 250 && status.state === 'queued'; i++) {
        await new Promise((r) => setTimeout(r, 20));
        status = await jobStatus(runtime.store, job.jobId);
      }
      expect(status).toMatchObject({ state: 'running', done: 0, chunks: { total: 1, done: 0 } });
      await runtime.cancel(job.jobId);
      await runtime.waitForJob(job.jobId);
    } finally {
      await runtime.stop();
    }
  });

  /** A store that counts (and can fail) the puts of started.json. */
  function countingStore(failFirst = 0): { store: ObjectStore; puts: () => number } {
    const local = new LocalStore(tempDir());
    let startedPuts = 0;
    const store = new Proxy(local, {
      get(target, name, receiver) {
        if (name === 'put') {
          return (key: string, ...rest: unknown[]) => {
            if (key.endsWith('/started.json') && ++startedPuts <= failFirst) return Promise.reject(new Error('disk unavailable'));
            return (target.put as (...a: unknown[]) => Promise<boolean>).call(target, key, ...rest);
          };
        }
        const value = Reflect.get(target, name, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as ObjectStore;
    return { store, puts: () => startedPuts };
  }

  it('costs one conditional write per job in a worker, not one per chunk', async () => {
    const { store, puts } = countingStore();
    const queue = new MemoryQueue();
    const fetcher = new Fetcher(guard);
    try {
      const job = await planUrls(store, queue, Array.from({ length: 5 }, (_, i) => `${origin.url}/ok?i=${i}`), { chunkSize: 1 });
      const deps = { store, fetcher, queue, ledger: new MemoryLedger(), cancelPollMs: 3_600_000 };
      for (const m of await queue.receive({ max: 10 })) await handleMessage(deps, m.body, { receiveCount: 1, maxReceiveCount: 5 });
      expect(puts()).toBe(1);
      expect((await jobStatus(store, job.jobId, deps.ledger)).state).not.toBe('queued');
    } finally {
      await fetcher.close();
    }
  });

  it('also when the worker receives several chunks of the job at once (its first wave)', async () => {
    const { store, puts } = countingStore();
    const queue = new MemoryQueue();
    const fetcher = new Fetcher(guard);
    try {
      await planUrls(store, queue, Array.from({ length: 6 }, (_, i) => `${origin.url}/ok?i=${i}`), { chunkSize: 1 });
      const deps = { store, fetcher, queue, ledger: new MemoryLedger(), cancelPollMs: 3_600_000 };
      const messages = await queue.receive({ max: 10 });
      expect(messages).toHaveLength(6);
      await Promise.all(messages.map((m) => handleMessage(deps, m.body, { receiveCount: 1, maxReceiveCount: 5 })));
      expect(puts()).toBe(1);
    } finally {
      await fetcher.close();
    }
  });

  it('when the shared write fails, the chunks that waited for it try once more (together)', async () => {
    const { store, puts } = countingStore(1);
    const queue = new MemoryQueue();
    const fetcher = new Fetcher(guard);
    try {
      const job = await planUrls(store, queue, Array.from({ length: 4 }, (_, i) => `${origin.url}/delay?ms=1500&i=${i}`), { chunkSize: 1 });
      const deps = { store, fetcher, queue, ledger: new MemoryLedger(), cancelPollMs: 3_600_000 };
      const all = Promise.all((await queue.receive({ max: 10 })).map((m) => handleMessage(deps, m.body, { receiveCount: 1, maxReceiveCount: 5 })));
      // While the first wave is still fetching, the job reads running.
      await expect.poll(() => jobStatus(store, job.jobId, deps.ledger).then((s) => s.state), { timeout: 1_000 }).toBe('running');
      expect(puts()).toBe(2);
      await all;
    } finally {
      await fetcher.close();
    }
  });

  it('tries again on the next chunk when the write failed', async () => {
    const { store, puts } = countingStore(1);
    const queue = new MemoryQueue();
    const fetcher = new Fetcher(guard);
    try {
      const job = await planUrls(store, queue, Array.from({ length: 2 }, (_, i) => `${origin.url}/ok?i=${i}`), { chunkSize: 1 });
      const deps = { store, fetcher, queue, ledger: new MemoryLedger(), cancelPollMs: 3_600_000 };
      const [first, second] = await queue.receive({ max: 10 });
      await handleMessage(deps, first!.body, { receiveCount: 1, maxReceiveCount: 5 });
      expect(await store.exists(`jobs/${job.jobId}/started.json`)).toBe(false);
      await handleMessage(deps, second!.body, { receiveCount: 1, maxReceiveCount: 5 });
      expect(puts()).toBe(2);
      expect(await store.exists(`jobs/${job.jobId}/started.json`)).toBe(true);
    } finally {
      await fetcher.close();
    }
  });
});
