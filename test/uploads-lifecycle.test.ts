import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { UploadTarget } from '../functions/api/deps.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { layout } from '../functions/core/layout.ts';
import { OptionsError } from '../functions/core/errors.ts';
import type { JobOptions } from '../functions/core/options.ts';
import { UPLOAD_DEFAULTS, sweepUploads } from '../functions/core/uploads.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { tempDir } from './support/tmp.ts';

// Defect 3 of the tryout: uploads were never deleted, and one upload could plan many jobs.
let runtime: EmbeddedRuntime;
const uploads: UploadTarget = {
  receivesPut: true,
  maxPending: 3,
  async target(id, url) {
    return { url: `${url.origin}/uploads/${id}`, method: 'PUT', headers: { 'content-type': 'text/plain' }, expiresAt: null };
  },
};

beforeAll(() => {
  runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: true }) });
  runtime.start();
});
afterAll(async () => {
  await runtime.stop();
});

function appWith(extra: { planInSlicesAboveBytes?: number; checkOptions?: (options: JobOptions) => void } = {}) {
  const app = createApp({ store: runtime.store, queue: runtime.queue, token: () => undefined, uploads, cancel: (j) => runtime.cancel(j), ...extra });
  const call = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
    app.request(`http://fanout.test${path}`, { method, body, headers });
  return { app, call };
}

async function upload(call: ReturnType<typeof appWith>['call'], list: string): Promise<string> {
  const made = await call('POST', '/uploads');
  expect(made.status).toBe(201);
  const { uploadId, expiresAt } = (await made.json()) as { uploadId: string; expiresAt: string };
  expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(UPLOAD_DEFAULTS.expireAfterMs - 60_000);
  expect((await call('PUT', `/uploads/${uploadId}`, list, { 'content-type': 'text/plain' })).status).toBe(204);
  return uploadId;
}

const submitUpload = (call: ReturnType<typeof appWith>['call'], uploadId: string) =>
  call('POST', '/jobs', JSON.stringify({ upload: uploadId }), { 'content-type': 'application/json' });

describe('upload lifecycle', () => {
  it('the list is deleted once its job is planned; the upload cannot plan a second job (409)', async () => {
    const { call } = appWith();
    const id = await upload(call, 'http://a.test/1\nhttp://a.test/2\n');
    const first = await submitUpload(call, id);
    expect(first.status).toBe(202);
    const { jobId } = (await first.json()) as { jobId: string };
    expect(await runtime.store.exists(layout.uploadList(id))).toBe(false);
    const again = await submitUpload(call, id);
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toMatch(/problem\+json/);
    expect(((await again.json()) as { detail: string }).detail).toContain(jobId);
    // nor can the slot take a new list
    expect((await call('PUT', `/uploads/${id}`, 'http://a.test/3\n', { 'content-type': 'text/plain' })).status).toBe(409);
    expect(await runtime.store.exists(layout.uploadList(id))).toBe(false);
  });

  it('a refused list is deleted (400), and the upload cannot be submitted again', async () => {
    const { call } = appWith();
    const id = await upload(call, 'http://a.test/1\nftp://nope\n');
    const refused = await submitUpload(call, id);
    expect(refused.status).toBe(400);
    expect(await runtime.store.exists(layout.uploadList(id))).toBe(false);
    const again = await submitUpload(call, id);
    expect(again.status).toBe(409);
    expect(((await again.json()) as { detail: string }).detail).toMatch(/refused/);
  });

  it("a JSON document's own options are held to the runtime's checks as the request's are (400 naming the field, the list deleted)", async () => {
    // As serve (a headerEnv variable it does not expose) or AWS (a timeoutMs beyond the worker's time) refuse them.
    const checkOptions = (options: JobOptions) => {
      if (options.timeoutMs > 60_000) throw new OptionsError('option "timeoutMs": at most 60000 ms here', 'timeoutMs');
    };
    const { call } = appWith({ checkOptions });
    const direct = await call('POST', '/jobs', JSON.stringify({ urls: ['http://a.test/1'], options: { timeoutMs: 90_000 } }), { 'content-type': 'application/json' });
    expect(direct.status).toBe(400);
    const id = await upload(call, JSON.stringify({ urls: ['http://a.test/1'], options: { timeoutMs: 90_000 } }));
    const refused = await call('POST', '/jobs', JSON.stringify({ upload: id, format: 'json' }), { 'content-type': 'application/json' });
    const body = await refused.json();
    expect(refused.status).toBe(400);
    expect(body).toMatchObject({ field: 'timeoutMs' });
    expect(await runtime.store.exists(layout.uploadList(id))).toBe(false);
    const fine = await upload(call, JSON.stringify({ urls: ['http://a.test/1'], options: { timeoutMs: 40_000 } }));
    expect((await call('POST', '/jobs', JSON.stringify({ upload: fine, format: 'json' }), { 'content-type': 'application/json' })).status).toBe(202);
  });

  it('a list planned in slices by the workers is deleted once planned', async () => {
    const { call } = appWith({ planInSlicesAboveBytes: 10 });
    const id = await upload(call, Array.from({ length: 50 }, (_, i) => `http://a.test/${i}`).join('\n'));
    const res = await submitUpload(call, id);
    expect(res.status).toBe(202);
    const { jobId, state } = (await res.json()) as { jobId: string; state: string };
    expect(state).toBe('planning');
    for (let i = 0; i < 200 && !(await runtime.store.exists(layout.job(jobId))); i++) await new Promise((r) => setTimeout(r, 25));
    for (let i = 0; i < 200 && (await runtime.store.exists(layout.uploadList(id))); i++) await new Promise((r) => setTimeout(r, 25));
    expect(await runtime.store.exists(layout.job(jobId))).toBe(true);
    expect(await runtime.store.exists(layout.uploadList(id))).toBe(false);
    await runtime.cancel(jobId);
  });

  it('pending slots are bounded (429), and expired slots and lists are swept', async () => {
    const { call } = appWith();
    const before = await runtime.store.listPrefixes('uploads/');
    for (const prefix of before) await runtime.store.deletePrefix(prefix);
    await upload(call, 'http://a.test/1\n'); // sent, never submitted
    await call('POST', '/uploads'); // never sent
    await call('POST', '/uploads');
    const fourth = await call('POST', '/uploads');
    expect(fourth.status).toBe(429);
    expect(fourth.headers.get('content-type')).toMatch(/problem\+json/);
    expect(await sweepUploads(runtime.store)).toBe(0); // nothing has expired yet
    const later = new Date(Date.now() + UPLOAD_DEFAULTS.expireAfterMs + 1000);
    expect(await sweepUploads(runtime.store, { now: later })).toBe(3);
    expect(await runtime.store.listPrefixes('uploads/')).toEqual([]);
    expect((await call('POST', '/uploads')).status).toBe(201);
  });
});
