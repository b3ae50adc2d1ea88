import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { rootCertificates } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lookup } from '../functions/core/engine/agent.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { OptionsError } from '../functions/core/errors.ts';
import { parseJobOptions } from '../functions/core/options.ts';
import { fanout } from './support/cli.ts';
import { openFetcher } from './support/engine.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const cert = fixture('self-signed.crt');
const key = fixture('self-signed.key');

describe('TLS job options: insecure and ca', () => {
  let server: Server;
  let url: string;
  // every name is this machine: the certificate's names (127.0.0.1, localhost) and one it lacks
  const loopback: Lookup = (_host, _options, callback) => callback(null, [{ address: '127.0.0.1', family: 4 }]);
  const engine = openFetcher(new AddressGuard({ blockPrivate: false }), loopback);

  beforeAll(async () => {
    server = createServer({ cert, key }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('secret');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await engine.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('refuses a self-signed certificate by default', async () => {
    const { record } = await engine.fetch(url, { retries: 0 });
    expect(record).toMatchObject({ ok: false, status: null, error: { code: 'tls' } });
  });

  it('insecure: true skips verification', async () => {
    const { record, body } = await engine.fetch(url, { retries: 0, insecure: true });
    expect(record).toMatchObject({ ok: true, status: 200 });
    expect(body?.toString()).toBe('secret');
  });

  it('ca: the server certificate trusted as a CA verifies it (name checks still apply)', async () => {
    const trusted = await engine.fetch(url, { retries: 0, ca: cert });
    expect(trusted.record).toMatchObject({ ok: true, status: 200 });
    expect(trusted.body?.toString()).toBe('secret');
    // the certificate names 127.0.0.1 and localhost, nothing else
    expect((await engine.fetch(url.replace('127.0.0.1', 'localhost'), { retries: 0, ca: cert })).record.ok).toBe(true);
    const { record } = await engine.fetch(url.replace('127.0.0.1', 'elsewhere.test'), { retries: 0, ca: cert });
    expect(record.error).toMatchObject({ code: 'tls', message: expect.stringMatching(/altnames|Hostname/i) });
  });

  it('ca: another certificate does not open the server, and the jobs do not share connections', async () => {
    const { record } = await engine.fetch(url, { retries: 0, ca: rootCertificates[0]! });
    expect(record).toMatchObject({ ok: false, error: { code: 'tls' } });
    // a job without the option, after jobs with it, is still refused
    expect((await engine.fetch(url, { retries: 0 })).record.error?.code).toBe('tls');
  });

  it('fanout fetch --ca FILE and --insecure reach it; a missing file exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-tls-'));
    try {
      writeFileSync(join(dir, 'urls.txt'), `${url}\n`);
      const run = (...flags: string[]) => fanout(['fetch', join(dir, 'urls.txt'), '--data-dir', join(dir, 'data'), '--workers', '1', '--json', ...flags]);
      const parse = (stdout: string) => JSON.parse(stdout) as { succeeded: number; failed: number };
      expect(parse((await run('--insecure')).stdout)).toMatchObject({ succeeded: 1, failed: 0 });
      const fixturePath = fileURLToPath(new URL('./fixtures/self-signed.crt', import.meta.url));
      expect(parse((await run('--ca', fixturePath)).stdout)).toMatchObject({ succeeded: 1, failed: 0 });
      const missing = await run('--ca', join(dir, 'nope.pem'));
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--ca: cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('ca must be PEM certificates', () => {
    expect(parseJobOptions({}).insecure).toBe(false);
    expect(parseJobOptions({}).ca).toBeNull();
    expect(() => parseJobOptions({ ca: 'not a certificate' })).toThrow(OptionsError);
    expect(() => parseJobOptions({ ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' })).toThrow(/option "ca": expected PEM/);
    expect(() => parseJobOptions({ insecure: 'yes' })).toThrow(/option "insecure"/);
    expect(parseJobOptions({ ca: `${cert}\n${rootCertificates[0]}` }).ca).toContain('BEGIN CERTIFICATE');
  });
});
