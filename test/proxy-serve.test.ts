/**
 * `fanout serve` (a server mode, with worker threads): a proxy is a job's explicit choice. The
 * environment's HTTP_PROXY is not used, and a proxy on loopback must be allowed by FANOUT_ALLOW_CIDRS
 * like any private address. Against Debian's tinyproxy and a loopback origin.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from './support/cli.ts';
import { startTinyproxy, type RealServer } from './support/real-servers.ts';
import { tempDir } from './support/tmp.ts';

describe('fanout serve and proxies', () => {
  const dir = tempDir();
  const seen = new Map<string, IncomingHttpHeaders>();
  let origin: Server;
  let originUrl: string;
  let proxy: RealServer;
  let serve: ServeProcess;
  let strict: ServeProcess;

  beforeAll(async () => {
    origin = createServer((req, res) => {
      seen.set(req.url!, req.headers);
      res.end('ok');
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    proxy = await startTinyproxy();
    const env = { HTTP_PROXY: proxy.url, http_proxy: proxy.url, NO_PROXY: '', no_proxy: '' };
    [serve, strict] = await Promise.all([
      // the origin and the proxy (both on 127.0.0.1) allowed
      startServe(['--data-dir', join(dir, 'open'), '--workers', '2'], { ...env, FANOUT_ALLOW_CIDRS: '127.0.0.1/32' }),
      // only the origin's neighbour allowed: the proxy on 127.0.0.1 is not
      startServe(['--data-dir', join(dir, 'strict'), '--workers', '1'], { ...env, FANOUT_ALLOW_CIDRS: '127.0.0.2/32' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([serve?.stop(), strict?.stop(), proxy?.stop()]);
    origin.closeAllConnections();
    await new Promise((resolve) => origin.close(resolve));
  });

  async function run(server: ServeProcess, urls: string[], options: Record<string, unknown> = {}) {
    const res = await fetch(`${server.url}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ urls, options: { retries: 0, ...options } }),
    });
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    for (let i = 0; i < 400; i++) {
      const status = (await (await fetch(`${server.url}/jobs/${jobId}`)).json()) as { state: string };
      if (status.state === 'completed') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const text = await (await fetch(`${server.url}/jobs/${jobId}/results`)).text();
    return text.trim().split('\n').map((line) => JSON.parse(line) as { ok: boolean; error: { code: string; message: string } | null });
  }

  const carried = () => proxy.read('tinyproxy.log');

  it('ignores HTTP_PROXY: a job without the option goes direct', async () => {
    const [record] = await run(serve, [`${originUrl}/direct`]);
    expect(record).toMatchObject({ ok: true });
    expect(seen.get('/direct')!.via).toBeUndefined();
    expect(carried()).not.toContain('/direct');
  });

  it('uses the proxy a job names, when the guard allows its address', async () => {
    const [record] = await run(serve, [`${originUrl}/named`], { proxy: proxy.url });
    expect(record).toMatchObject({ ok: true });
    expect(seen.get('/named')!.via).toMatch(/tinyproxy/);
    expect(carried()).toContain(`GET ${originUrl}/named HTTP/1.1`);
  });

  it('refuses a proxy on loopback that FANOUT_ALLOW_CIDRS does not allow', async () => {
    const [record] = await run(strict, ['http://127.0.0.2:9/refused'], { proxy: proxy.url });
    expect(record).toMatchObject({ ok: false, error: { code: 'blocked' } });
    expect(record!.error!.message).toContain(`the proxy 127.0.0.1:${proxy.port}`);
    expect(carried()).not.toContain('/refused');
  });
});
