/**
 * The job option `proxy` and the proxy environment variables of `fanout fetch`, against Debian's
 * tinyproxy (its log has a line per request it carried) and loopback origins started here.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import type { Lookup } from '../functions/core/engine/agent.ts';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { NoProxy, proxyAuthForFromEnv, proxyAuthFromEnv, proxyRoutesFromEnv } from '../functions/core/engine/proxy.ts';
import { ConfigError, OptionsError } from '../functions/core/errors.ts';
import { parseJobOptions, type JobOptionsInput } from '../functions/core/options.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { fanout } from './support/cli.ts';
import { startTinyproxy, TEST_CERT, type RealServer } from './support/real-servers.ts';
import { tempDir } from './support/tmp.ts';

const cert = readFileSync(TEST_CERT.cert, 'utf8');
const key = readFileSync(TEST_CERT.key, 'utf8');
/** Nothing of the machine's own proxy settings leaks into the CLI runs. */
const NO_ENV_PROXY = { HTTP_PROXY: '', HTTPS_PROXY: '', http_proxy: '', https_proxy: '', NO_PROXY: '', no_proxy: '', FANOUT_PROXY_AUTH: '' };

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
}

let proxy: RealServer;
let authProxy: RealServer;
let httpOrigin: Server;
let httpsOrigin: Server;
let httpUrl: string;
let httpsUrl: string;
const seen: Seen[] = [];

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(String((server.address() as AddressInfo).port))));
}

function handler(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) {
  seen.push({ path: req.url!, headers: req.headers });
  const moved = /^\/moved\?to=(.+)$/.exec(req.url!);
  if (moved) {
    res.writeHead(302, { location: decodeURIComponent(moved[1]!) });
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello ${req.url}`);
}

/** Lines of tinyproxy's log that name a request it carried. */
function carried(server: RealServer): string[] {
  return server
    .read('tinyproxy.log')
    .split('\n')
    .filter((line) => /Request \(file descriptor \d+\): /.test(line))
    .map((line) => line.replace(/^.*Request \(file descriptor \d+\): /, ''));
}

function fetcherWith(guard = new AddressGuard({ blockPrivate: false }), lookup?: Lookup, options: ConstructorParameters<typeof Fetcher>[2] = {}) {
  const fetcher = new Fetcher(guard, lookup, options);
  let index = 0;
  return {
    fetcher,
    fetch: (url: string, overrides: JobOptionsInput = {}) =>
      fetcher.fetch({ index: index++, url }, parseJobOptions({ retries: 0, timeoutMs: 5_000, ...overrides })),
    close: () => fetcher.close(),
  };
}

beforeAll(async () => {
  [proxy, authProxy] = await Promise.all([startTinyproxy(), startTinyproxy({ config: 'BasicAuth alice s3cret' })]);
  httpOrigin = createHttpServer(handler);
  httpsOrigin = createHttpsServer({ cert, key }, handler);
  httpUrl = `http://127.0.0.1:${await listen(httpOrigin)}`;
  httpsUrl = `https://127.0.0.1:${await listen(httpsOrigin)}`;
});

afterAll(async () => {
  await Promise.all([proxy?.stop(), authProxy?.stop()]);
  for (const server of [httpOrigin, httpsOrigin]) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

describe('the job option proxy, through tinyproxy', () => {
  const engine = fetcherWith();
  afterAll(() => engine.close());

  it('sends an http:// target to the proxy as an absolute-form request', async () => {
    const { record, body } = await engine.fetch(`${httpUrl}/plain`, { proxy: proxy.url });
    expect(record).toMatchObject({ ok: true, status: 200, error: null });
    expect(body!.toString()).toBe('hello /plain');
    expect(carried(proxy)).toContain(`GET ${httpUrl}/plain HTTP/1.1`);
    // tinyproxy adds its Via header on the way: the origin saw the request come through it
    expect(seen.find((s) => s.path === '/plain')!.headers.via).toMatch(/tinyproxy/);
  });

  it('reaches an https:// target through a CONNECT tunnel, with the job TLS settings for the target', async () => {
    const { record, body } = await engine.fetch(`${httpsUrl}/tunnelled`, { proxy: proxy.url, ca: cert });
    expect(record).toMatchObject({ ok: true, status: 200, error: null });
    expect(body!.toString()).toBe('hello /tunnelled');
    expect(carried(proxy)).toContain(`CONNECT ${httpsUrl.slice('https://'.length)} HTTP/1.1`);
    // inside the tunnel the proxy cannot add anything
    expect(seen.find((s) => s.path === '/tunnelled')!.headers.via).toBeUndefined();

    // the target's certificate is checked inside the tunnel: refused without ca, taken with insecure
    expect((await engine.fetch(`${httpsUrl}/no-ca`, { proxy: proxy.url })).record.error).toMatchObject({ code: 'tls' });
    expect((await engine.fetch(`${httpsUrl}/insecure`, { proxy: proxy.url, insecure: true })).record).toMatchObject({ ok: true });
  });

  it('gives each redirect hop its own Host header (a tunnel carries it unchanged)', async () => {
    const other = httpsUrl.replace('127.0.0.1', 'localhost');
    const { record } = await engine.fetch(`${httpsUrl}/moved?to=${encodeURIComponent(`${other}/landed`)}`, { proxy: proxy.url, ca: cert });
    expect(record).toMatchObject({ ok: true, redirects: 1, finalUrl: `${other}/landed` });
    expect(seen.find((s) => s.path === '/landed')!.headers.host).toBe(new URL(other).host);
    expect(carried(proxy)).toContain(`CONNECT ${new URL(other).host} HTTP/1.1`);
  });

  it('counts proxy sockets in the socket budget: a budget of one socket serves plain and tunnelled requests at once', async () => {
    const tight = fetcherWith(undefined, undefined, { maxSockets: 1 });
    try {
      const urls = [1, 2, 3, 4].flatMap((i) => [`${httpUrl}/budget-${i}`, `${httpsUrl}/budget-${i}`]);
      const results = await Promise.all(urls.map((url) => tight.fetch(url, { proxy: proxy.url, ca: cert })));
      expect(results.map((r) => r.record.status)).toEqual(urls.map(() => 200));
      expect(tight.fetcher.sockets).toMatchObject({ max: 1, peak: 1 });
      expect(tight.fetcher.sockets.waited).toBeGreaterThan(0);
    } finally {
      await tight.close();
    }
  });

  it('talks TLS to an https:// proxy (tinyproxy behind a TLS front), checked with the job ca, never skipped by insecure', async () => {
    // an https:// proxy: TLS with the test certificate, each connection piped to tinyproxy
    const front = createTlsServer({ cert, key }, (client) => {
      const upstream = connect(proxy.port, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      const end = () => (client.destroy(), upstream.destroy());
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    const frontUrl = `https://127.0.0.1:${await listen(front as unknown as Server)}`;
    try {
      for (const url of [`${httpUrl}/via-tls-proxy`, `${httpsUrl}/via-tls-proxy`]) {
        const { record } = await engine.fetch(url, { proxy: frontUrl, ca: cert });
        expect(record, url).toMatchObject({ ok: true, status: 200 });
      }
      // through an https:// proxy both go through CONNECT
      expect(carried(proxy)).toEqual(expect.arrayContaining([`CONNECT ${httpUrl.slice(7)} HTTP/1.1`, `CONNECT ${httpsUrl.slice(8)} HTTP/1.1`]));
      // insecure skips the target's check, not the proxy's
      const { record } = await engine.fetch(`${httpUrl}/untrusted-proxy`, { proxy: frontUrl, insecure: true });
      expect(record.error).toMatchObject({ code: 'tls' });
    } finally {
      front.close();
    }
  });

  it('refuses credentials in the option, and sends FANOUT_PROXY_AUTH as Proxy-Authorization', async () => {
    expect(() => parseJobOptions({ proxy: 'http://alice:s3cret@127.0.0.1:3128' })).toThrow(OptionsError);
    expect(() => parseJobOptions({ proxy: 'http://alice:s3cret@127.0.0.1:3128' })).toThrow(/FANOUT_PROXY_AUTH/);
    expect(() => parseJobOptions({ proxy: 'socks5://127.0.0.1:1080' })).toThrow(/http:\/\/ or https:\/\//);
    expect(() => parseJobOptions({ proxy: 'http://127.0.0.1:3128/path' })).toThrow(/path/);
    // The variable itself: user:password; a Secrets Manager ARN nobody resolved never goes out as credentials.
    expect(proxyAuthFromEnv({ FANOUT_PROXY_AUTH: 'alice:s3cret' })).toBe('alice:s3cret');
    expect(proxyAuthFromEnv({})).toBeUndefined();
    expect(() => proxyAuthFromEnv({ FANOUT_PROXY_AUTH: 'alice' })).toThrow(/expected user:password/);
    expect(() => proxyAuthFromEnv({ FANOUT_PROXY_AUTH: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:p' })).toThrow(ConfigError);

    // without credentials the proxy answers 407, for plain and tunnelled requests alike
    for (const url of [`${httpUrl}/no-auth`, `${httpsUrl}/no-auth`]) {
      const { record } = await engine.fetch(url, { proxy: authProxy.url, ca: cert });
      expect(record.ok).toBe(false);
      expect(record.error!.message).toMatch(/407 Proxy Authentication Required: set \(or check\) FANOUT_PROXY_AUTH/);
    }
    const authed = fetcherWith(undefined, undefined, { proxyAuth: 'alice:s3cret' });
    try {
      for (const url of [`${httpUrl}/authed`, `${httpsUrl}/authed`]) {
        expect((await authed.fetch(url, { proxy: authProxy.url, ca: cert })).record).toMatchObject({ ok: true, status: 200 });
      }
      expect(carried(authProxy)).toEqual(expect.arrayContaining([`GET ${httpUrl}/authed HTTP/1.1`, `CONNECT ${httpsUrl.slice(8)} HTTP/1.1`]));
    } finally {
      await authed.close();
    }
    // the credentials went to the proxy, never to the origin
    expect(seen.filter((s) => s.path === '/authed').every((s) => s.headers['proxy-authorization'] === undefined)).toBe(true);
  });

  it('in server modes sends FANOUT_PROXY_AUTH only to the proxies in FANOUT_PROXY_AUTH_FOR: a proxy a job names itself gets none', async () => {
    expect(proxyAuthForFromEnv({ FANOUT_PROXY_AUTH_FOR: ` ${authProxy.url}/ , https://other.test:8443 ` })).toEqual([new URL(authProxy.url).origin, 'https://other.test:8443']);
    expect(proxyAuthForFromEnv({})).toEqual([]);
    expect(() => proxyAuthForFromEnv({ FANOUT_PROXY_AUTH_FOR: 'socks5://x:1' })).toThrow(/FANOUT_PROXY_AUTH_FOR: "socks5:\/\/x:1" is not an http/);
    const listed = fetcherWith(undefined, undefined, { proxyAuth: 'alice:s3cret', proxyAuthFor: [new URL(authProxy.url).origin] });
    const unlisted = fetcherWith(undefined, undefined, { proxyAuth: 'alice:s3cret', proxyAuthFor: ['http://proxy.corp.test:3128'] });
    try {
      expect((await listed.fetch(`${httpUrl}/listed`, { proxy: authProxy.url })).record).toMatchObject({ ok: true, status: 200 });
      const { record } = await unlisted.fetch(`${httpUrl}/unlisted`, { proxy: authProxy.url });
      expect(record.ok).toBe(false);
      expect(record.error!.message).toMatch(/407 .*only to the proxies in FANOUT_PROXY_AUTH_FOR/);
    } finally {
      await Promise.all([listed.close(), unlisted.close()]);
    }
  });
});

describe('the address guard with a proxy', () => {
  // public.test is a public address (the proxy may not be reached); internal.test a private one;
  // mixed.test answers both; every other name is this machine.
  const lookup: Lookup = (host, _options, callback) => {
    const answers: Record<string, string[]> = { 'public.test': ['93.184.215.14'], 'internal.test': ['10.0.0.1'], 'mixed.test': ['127.0.0.1', '10.0.0.2'] };
    callback(null, (answers[host] ?? ['127.0.0.1']).map((address) => ({ address, family: 4 })));
  };

  it('refuses a proxy on a private address unless FANOUT_ALLOW_CIDRS allows it', async () => {
    const strict = fetcherWith(new AddressGuard({ blockPrivate: true }), lookup);
    try {
      for (const url of ['http://public.test/x', 'https://public.test/x']) {
        const { record } = await strict.fetch(url, { proxy: proxy.url });
        expect(record.error).toMatchObject({ code: 'blocked' });
        expect(record.error!.message).toContain(`the proxy 127.0.0.1:${proxy.port}`);
      }
    } finally {
      await strict.close();
    }
  });

  it('checks the target before the proxy sees it: private answers are refused, every answer must pass', async () => {
    const allowed = fetcherWith(new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }), lookup);
    try {
      expect((await allowed.fetch(`${httpUrl}/allowed`, { proxy: proxy.url })).record).toMatchObject({ ok: true });
      const port = new URL(httpUrl).port;
      for (const url of [`http://internal.test:${port}/refused`, `http://mixed.test:${port}/refused`, 'https://10.1.2.3/refused', 'http://127.0.0.2/refused']) {
        expect((await allowed.fetch(url, { proxy: proxy.url })).record.error, url).toMatchObject({ code: 'blocked' });
      }
      expect(carried(proxy).filter((line) => line.includes('/refused') || line.includes('10.1.2.3'))).toEqual([]);
    } finally {
      await allowed.close();
    }
  });
});

describe('proxy settings from the environment', () => {
  it('reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY as curl does, lower case first', () => {
    expect(proxyRoutesFromEnv({})).toBeNull();
    expect(proxyRoutesFromEnv({ HTTPS_PROXY: 'http://p:3128', NO_PROXY: 'localhost' })).toEqual({ http: null, https: 'http://p:3128', noProxy: 'localhost' });
    expect(proxyRoutesFromEnv({ http_proxy: 'http://lower:1', HTTP_PROXY: 'http://upper:2' })!.http).toBe('http://lower:1');
    expect(proxyRoutesFromEnv({ HTTP_PROXY: 'proxy.example:3128' })!.http).toBe('http://proxy.example:3128');
    // the environment is the operator's: credentials may be there
    expect(proxyRoutesFromEnv({ HTTP_PROXY: 'http://u:p@proxy:3128' })!.http).toBe('http://u:p@proxy:3128');
    expect(() => proxyRoutesFromEnv({ HTTPS_PROXY: 'ftp://proxy' })).toThrow(ConfigError);
    expect(() => proxyRoutesFromEnv({ HTTPS_PROXY: 'ftp://proxy' })).toThrow(/HTTPS_PROXY/);
  });

  it('NO_PROXY: hosts and their subdomains, ports, IP addresses, CIDR ranges and *', () => {
    const noProxy = new NoProxy('localhost, .internal.example,*.corp.test example.org:8080 10.0.0.0/8 [::1] 192.168.1.5');
    const bypasses = (url: string) => noProxy.bypasses(new URL(url));
    expect(bypasses('http://localhost:1234/')).toBe(true);
    expect(bypasses('http://a.internal.example/')).toBe(true);
    expect(bypasses('http://internal.example/')).toBe(true);
    expect(bypasses('http://x.y.corp.test/')).toBe(true);
    expect(bypasses('http://example.org:8080/')).toBe(true);
    expect(bypasses('http://example.org/')).toBe(false);
    expect(bypasses('http://10.2.3.4/')).toBe(true);
    expect(bypasses('http://[::1]:80/')).toBe(true);
    expect(bypasses('http://192.168.1.5/')).toBe(true);
    expect(bypasses('http://192.168.1.6/')).toBe(false);
    expect(bypasses('http://notlocalhost/')).toBe(false);
    expect(new NoProxy('*').bypasses(new URL('https://anything.example/'))).toBe(true);
  });
});

describe('fanout fetch and the API', () => {
  const base = tempDir();
  function runFetch(list: string[], extra: string[], env: Record<string, string> = {}) {
    const dir = mkdtempSync(join(base, 'run-'));
    writeFileSync(join(dir, 'list.txt'), list.join('\n') + '\n');
    const out = join(dir, 'records.ndjson');
    const workers = extra.includes('--workers') ? [] : ['--workers', '1'];
    return fanout(['fetch', join(dir, 'list.txt'), '--out', out, '--no-progress', '--data-dir', join(dir, 'data'), ...workers, '--retries', '0', ...extra], {
      env: { ...NO_ENV_PROXY, ...env },
    }).then((run) => ({
      ...run,
      records: run.code === 0 ? readFileSync(out, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { url: string; status: number }) : [],
      jobJson: () => {
        const jobs = join(dir, 'data', 'jobs');
        return readFileSync(join(jobs, readdirSync(jobs)[0]!, 'job.json'), 'utf8');
      },
    }));
  }

  it('--proxy URL, with FANOUT_PROXY_AUTH for credentials; credentials in the URL exit 2', async () => {
    const run = await runFetch([`${httpUrl}/cli-flag`], ['--proxy', authProxy.url], { FANOUT_PROXY_AUTH: 'alice:s3cret' });
    expect(run.code, run.stderr).toBe(0);
    expect(run.records).toMatchObject([{ status: 200 }]);
    expect(carried(authProxy)).toContain(`GET ${httpUrl}/cli-flag HTTP/1.1`);
    expect(JSON.parse(run.jobJson()).options.proxy).toBe(authProxy.url);
    expect(run.jobJson()).not.toContain('s3cret');

    const refused = await runFetch([`${httpUrl}/never`], ['--proxy', `http://alice:s3cret@127.0.0.1:${authProxy.port}`]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--proxy.*FANOUT_PROXY_AUTH/);
  });

  it('honours HTTP_PROXY and NO_PROXY, in worker threads too', async () => {
    const direct = httpUrl.replace('127.0.0.1', 'localhost');
    // one URL per chunk, two threads: the threads route as the main thread read the environment
    const run = await runFetch([`${httpUrl}/env-proxied`, `${direct}/env-direct`], ['--workers', '2', '--chunk-size', '1'], {
      HTTP_PROXY: proxy.url,
      NO_PROXY: 'localhost',
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.records.map((r) => r.status)).toEqual([200, 200]);
    expect(carried(proxy)).toContain(`GET ${httpUrl}/env-proxied HTTP/1.1`);
    expect(carried(proxy).some((line) => line.includes('/env-direct'))).toBe(false);
    expect(seen.find((s) => s.path === '/env-direct')!.headers.via).toBeUndefined();
  });

  it('the API takes proxy, http2 and ratePerHost, documents them, and refuses credentials with a 400', async () => {
    // A server mode: private addresses blocked, the loopback proxy (and origin) allowed explicitly.
    const runtime = new EmbeddedRuntime({ dataDir: mkdtempSync(join(base, 'api-')), guard: new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }) });
    runtime.start();
    const app = createApp({
      store: runtime.store,
      queue: runtime.queue,
      token: () => undefined,
      uploads: { receivesPut: true, target: async () => ({ url: '', method: 'PUT', headers: {}, expiresAt: null }) },
      cancel: (id) => runtime.cancel(id),
    });
    try {
      const post = (options: Record<string, unknown>) =>
        app.request('http://fanout.test/jobs', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ urls: [`${httpUrl}/api-proxied`], options }),
        });
      const res = await post({ proxy: proxy.url, http2: true, ratePerHost: 2 });
      expect(res.status).toBe(202);
      const { jobId } = (await res.json()) as { jobId: string };
      let status: { state: string; succeeded: number } = { state: '', succeeded: 0 };
      for (let i = 0; i < 200 && status.state !== 'completed'; i++) {
        await new Promise((r) => setTimeout(r, 25));
        status = (await (await app.request(`http://fanout.test/jobs/${jobId}`)).json()) as typeof status;
      }
      expect(status).toMatchObject({ state: 'completed', succeeded: 1 });
      expect(carried(proxy)).toContain(`GET ${httpUrl}/api-proxied HTTP/1.1`);

      const refused = await post({ proxy: `http://alice:s3cret@127.0.0.1:${authProxy.port}` });
      expect(refused.status).toBe(400);
      expect(await refused.text()).toMatch(/FANOUT_PROXY_AUTH/);

      // The options schema is the API's: the OpenAPI document lists the new fields with their types.
      const doc = JSON.stringify(await (await app.request('http://fanout.test/openapi.json')).json());
      expect(doc).toContain('"proxy":{"type":["string","null"]');
      expect(doc).toContain('"http2":{"type":"boolean","default":false,');
      expect(doc).toContain('"ratePerHost":{"type":["number","null"],"minimum":0.01');
    } finally {
      await runtime.stop();
    }
  });
});
