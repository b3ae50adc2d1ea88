/**
 * Issue 14 item 9: a DELETE that arrives as the last chunk is being written must not claim a cancel
 * for a job that then ends `completed`. A store wrapper holds the chunk's result file until the
 * cancel marker is written, so the race is the same on every run.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { UploadTarget } from '../functions/api/deps.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { openInput } from '../functions/core/input.ts';
import { layout } from '../functions/core/layout.ts';
import type { ObjectStore } from '../functions/core/ports.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { fanout } from './support/cli.ts';
import { startOrigin, type Origin } from './support/origin.ts';
import { tempDir } from './support/tmp.ts';

let origin: Origin;
let runtime: EmbeddedRuntime;
let app: ReturnType<typeof createApp>;
let openGate: () => void = () => {};
let gate = Promise.resolve();
const uploads: UploadTarget = { receivesPut: true, target: async () => ({ url: 'http://x.test/', method: 'PUT', headers: {}, expiresAt: null }) };

/** Result files wait at the gate; writing a cancel marker opens it. */
function gatedStore(inner: ObjectStore): ObjectStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'put') {
        return async (key: string, body: Parameters<ObjectStore['put']>[1], options?: Parameters<ObjectStore['put']>[2]) => {
          if (key.includes('/results/')) await gate;
          const wrote = await target.put(key, body, options);
          if (key.endsWith('/cancel.json')) openGate();
          return wrote;
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

beforeAll(async () => {
  origin = await startOrigin();
  const dataDir = tempDir();
  runtime = new EmbeddedRuntime({ dataDir, store: gatedStore(new LocalStore(dataDir)), guard: new AddressGuard({ blockPrivate: false }) });
  runtime.start();
  app = createApp({ store: runtime.store, queue: runtime.queue, token: () => undefined, uploads, cancel: (id) => runtime.cancel(id) });
});
afterAll(async () => {
  await runtime.stop();
  await origin.close();
});

const call = (method: string, path: string, body?: string) =>
  app.request(`http://fanout.test${path}`, { method, body, headers: { 'content-type': 'text/plain' } });

describe('DELETE near completion', () => {
  it('answers 409 "already ended (completed)" when every URL was fetched before the cancel landed', async () => {
    gate = new Promise<void>((resolve) => (openGate = resolve));
    let fetched = 0;
    const allFetched = new Promise<void>((resolve) => runtime.on('progress', (_id, done) => (fetched += done) === 5 && resolve()));
    const urls = Array.from({ length: 5 }, (_, i) => `${origin.url}/ok?race=${i}`);
    const { jobId } = (await (await call('POST', '/jobs?chunkSize=5', urls.join('\n'))).json()) as { jobId: string };
    await allFetched; // every record is made; the result file waits for the marker
    const res = await call('DELETE', `/jobs/${jobId}`);
    const body = (await res.json()) as { detail: string };
    expect(res.status).toBe(409);
    expect(res.headers.get('content-type')).toMatch(/problem\+json/);
    expect(body.detail).toMatch(/already ended \(completed\)/);
    const status = (await (await call('GET', `/jobs/${jobId}`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ state: 'completed', done: 5, succeeded: 5 });
  });

  it('answers 200 with the final status when the cancel ended the job', async () => {
    gate = Promise.resolve();
    const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/hang?race=${i}`);
    const { jobId } = (await (await call('POST', '/jobs?chunkSize=10&timeoutMs=60000', urls.join('\n'))).json()) as { jobId: string };
    const res = await call('DELETE', `/jobs/${jobId}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ state: 'cancelled', done: 20, byError: { cancelled: 20 } });
    const again = await call('DELETE', `/jobs/${jobId}`);
    expect(again.status).toBe(409);
    expect(((await again.json()) as { detail: string }).detail).toMatch(/already ended \(cancelled\)/);
  });
});

describe('fanout cancel near completion', () => {
  it('says the job already ended (completed) and exits 2 when every URL had been fetched', async () => {
    // A job whose every chunk was written and counted, stopped before its manifest: nothing is left to cancel.
    const dataDir = tempDir();
    const local = new EmbeddedRuntime({ dataDir, guard: new AddressGuard({ blockPrivate: false }) });
    const urls = Array.from({ length: 3 }, (_, i) => `${origin.url}/ok?cli=${i}`).join('\n');
    const job = await local.submit(await openInput(Readable.from([urls])), { chunkSize: 3 });
    local.start();
    await local.waitForJob(job.jobId);
    await local.stop();
    rmSync(join(dataDir, layout.manifest(job.jobId)));

    const run = await fanout(['cancel', job.jobId, '--data-dir', dataDir]);
    expect(run.stderr).toMatch(/already ended \(completed\)/);
    expect(run.code).toBe(2);
    const status = await fanout(['status', job.jobId, '--data-dir', dataDir, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: 'completed', succeeded: 3 });
  }, 30_000);
});
