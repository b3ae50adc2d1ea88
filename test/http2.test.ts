/**
 * The job option `http2` against nginx with HTTP/2 (ALPN h2) and the test certificate: nginx says
 * which protocol it served, in its access log and in a response header the config adds.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { parseJobOptions, type JobOptionsInput } from '../functions/core/options.ts';
import { fanout } from './support/cli.ts';
import { startNginx, startNginxHttp2, startTinyproxy, TEST_CERT, type RealServer } from './support/real-servers.ts';
import { tempDir } from './support/tmp.ts';

const ca = readFileSync(TEST_CERT.cert, 'utf8');
const SERVER = 'add_header X-Protocol $server_protocol always;';

describe('http2, against nginx', () => {
  const root = tempDir();
  let h2: RealServer;
  let h1only: RealServer;
  let proxy: RealServer;

  beforeAll(async () => {
    writeFileSync(join(root, 'page.txt'), 'hello');
    [h2, h1only, proxy] = await Promise.all([
      startNginxHttp2({ root, server: SERVER }),
      startNginx({ root, server: SERVER, tls: {} }),
      startTinyproxy(),
    ]);
  });
  afterAll(async () => {
    await Promise.all([h2?.stop(), h1only?.stop(), proxy?.stop()]);
  });

  function open() {
    const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
    let index = 0;
    return {
      fetcher,
      fetch: (url: string, options: JobOptionsInput = {}) => fetcher.fetch({ index: index++, url }, parseJobOptions({ retries: 0, ca, ...options })),
    };
  }

  it('speaks HTTP/2 when asked and the server offers it, HTTP/1.1 otherwise', async () => {
    const { fetcher, fetch } = open();
    try {
      const asked = await fetch(`${h2.url}/page.txt?h2`, { http2: true });
      expect(asked.record).toMatchObject({ ok: true, status: 200, headers: { 'x-protocol': 'HTTP/2.0' } });
      expect(asked.body!.toString()).toBe('hello');
      expect(h2.read('access.log')).toContain('"GET /page.txt?h2 HTTP/2.0" 200');

      const notAsked = await fetch(`${h2.url}/page.txt?h1`);
      expect(notAsked.record).toMatchObject({ ok: true, headers: { 'x-protocol': 'HTTP/1.1' } });
      expect(h2.read('access.log')).toContain('"GET /page.txt?h1 HTTP/1.1" 200');

      // a server without h2 in its ALPN gets HTTP/1.1 from a job that asks for HTTP/2
      const fallback = await fetch(`${h1only.url}/page.txt?fallback`, { http2: true });
      expect(fallback.record).toMatchObject({ ok: true, headers: { 'x-protocol': 'HTTP/1.1' } });
    } finally {
      await fetcher.close();
    }
  });

  it('multiplexes requests on one HTTP/2 connection', async () => {
    for (const http2 of [true, false]) {
      const { fetcher, fetch } = open();
      try {
        await fetch(`${h2.url}/page.txt?warm`, { http2 });
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => fetch(`${h2.url}/page.txt?many=${i}`, { http2 })));
        expect(results.every((r) => r.record.ok)).toBe(true);
        // HTTP/1.1 needs a connection per request in flight (up to perHost, 8)
        if (http2) expect(fetcher.sockets.peak).toBe(1);
        else expect(fetcher.sockets.peak).toBeGreaterThan(1);
      } finally {
        await fetcher.close();
      }
    }
  });

  it('speaks HTTP/2 inside a proxy tunnel', async () => {
    const { fetcher, fetch } = open();
    try {
      const { record } = await fetch(`${h2.url}/page.txt?tunnel`, { http2: true, proxy: proxy.url });
      expect(record).toMatchObject({ ok: true, headers: { 'x-protocol': 'HTTP/2.0' } });
      expect(proxy.read('tinyproxy.log')).toContain(`CONNECT 127.0.0.1:${h2.port} HTTP/1.1`);
      expect(h2.read('access.log')).toContain('"GET /page.txt?tunnel HTTP/2.0" 200');
    } finally {
      await fetcher.close();
    }
  });

  it('fanout fetch --http2 --ca FILE', async () => {
    const dir = mkdtempSync(join(root, 'cli-'));
    writeFileSync(join(dir, 'list.txt'), `${h2.url}/page.txt?cli\n`);
    const out = join(dir, 'records.ndjson');
    const run = await fanout(
      ['fetch', join(dir, 'list.txt'), '--out', out, '--no-progress', '--data-dir', join(dir, 'data'), '--workers', '1', '--http2', '--ca', TEST_CERT.cert],
      { env: { HTTP_PROXY: '', HTTPS_PROXY: '', http_proxy: '', https_proxy: '' } },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toMatchObject({ ok: true, headers: { 'x-protocol': 'HTTP/2.0' } });
    expect(h2.read('access.log')).toContain('"GET /page.txt?cli HTTP/2.0" 200');
  });

  it('http2 is a boolean option', () => {
    expect(parseJobOptions({}).http2).toBe(false);
    expect(() => parseJobOptions({ http2: 'yes' })).toThrow(/option "http2"/);
  });
});
