import type { LookupAddress } from 'node:dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressGuard, embeddedIPv4, isPrivateAddress } from '../functions/core/engine/guard.ts';
import type { Lookup } from '../functions/core/engine/agent.ts';
import { openFetcher } from './support/engine.ts';
import { startOrigin, type Origin } from './support/origin.ts';

describe('isPrivateAddress', () => {
  it.each([
    '127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254',
    '169.254.0.1', '100.64.0.1', '100.127.255.255', '0.0.0.0', '0.1.2.3', '224.0.0.1', '255.255.255.255', '198.18.0.1',
    '::1', '::', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'fe80::1%eth0', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', '::127.0.0.1',
    '64:ff9b::a9fe:a9fe', '2002:7f00:1::', '[::1]',
  ])('%s is private', (address) => {
    expect(isPrivateAddress(address)).toBe(true);
  });

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '2001:4860:4860::8888'])(
    '%s is public',
    (address) => {
      expect(isPrivateAddress(address)).toBe(false);
    },
  );

  it('reads the IPv4 inside IPv6 forms', () => {
    expect(embeddedIPv4('::ffff:192.168.0.1')).toBe('192.168.0.1');
    expect(embeddedIPv4('::ffff:c0a8:1')).toBe('192.168.0.1');
    expect(embeddedIPv4('64:ff9b::808:808')).toBe('8.8.8.8');
    expect(embeddedIPv4('2606:4700::1111')).toBeUndefined();
  });
});

describe('AddressGuard', () => {
  it('permits everything when off', () => {
    expect(new AddressGuard({ blockPrivate: false }).permits('127.0.0.1')).toBe(true);
  });

  it('opens only the CIDRs allowed, in every form', () => {
    const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.2/32', 'fd00::/8'] });
    expect(guard.permits('127.0.0.2')).toBe(true);
    expect(guard.permits('::ffff:127.0.0.2')).toBe(true);
    expect(guard.permits('127.0.0.1')).toBe(false);
    expect(guard.permits('fd00::5')).toBe(true);
    expect(guard.permits('fc00::5')).toBe(false);
    expect(guard.permits('8.8.8.8')).toBe(true);
  });

  it('reads the environment', () => {
    expect(AddressGuard.fromEnv({}).blockPrivate).toBe(true);
    expect(AddressGuard.fromEnv({ FANOUT_ALLOW_PRIVATE: '1' }).blockPrivate).toBe(false);
    expect(AddressGuard.fromEnv({}, false).blockPrivate).toBe(false);
    expect(AddressGuard.fromEnv({ FANOUT_ALLOW_CIDRS: '10.0.0.0/8, 127.0.0.1' }).permits('10.9.9.9')).toBe(true);
    expect(() => AddressGuard.fromEnv({ FANOUT_ALLOW_CIDRS: '10.0.0/33' })).toThrow(/not a CIDR/);
  });
});

describe('the guard on real connections', () => {
  let allowed: Origin; // 127.0.0.1, allowed by CIDR
  let forbidden: Origin; // 127.0.0.2, not allowed
  let engine: ReturnType<typeof openFetcher>;
  const fakeDns = new Map<string, LookupAddress[]>();
  const lookup: Lookup = (host, _options, callback) => {
    const answer = fakeDns.get(host);
    if (!answer) return callback(Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), '');
    callback(null, answer);
  };

  beforeAll(async () => {
    allowed = await startOrigin('127.0.0.1');
    forbidden = await startOrigin('127.0.0.2');
    fakeDns.set('public.test', [{ address: '127.0.0.1', family: 4 }]);
    fakeDns.set('rebind.test', [{ address: '127.0.0.2', family: 4 }]);
    fakeDns.set('mixed.test', [
      { address: '127.0.0.2', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ]);
    engine = openFetcher(new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32'] }), lookup);
  });
  afterAll(async () => {
    await engine.close();
    await allowed.close();
    await forbidden.close();
  });

  it('lets the allowed origin through', async () => {
    expect((await engine.fetch(`${allowed.url}/ok`)).record).toMatchObject({ ok: true, status: 200 });
  });

  it.each([
    ['dotted', (p: number) => `http://127.0.0.2:${p}/ok`],
    ['decimal', (p: number) => `http://2130706434:${p}/ok`],
    ['hex', (p: number) => `http://0x7f000002:${p}/ok`],
    ['octal', (p: number) => `http://0177.0.0.2:${p}/ok`],
    ['short', (p: number) => `http://127.2:${p}/ok`],
    ['IPv4-mapped IPv6', (p: number) => `http://[::ffff:127.0.0.2]:${p}/ok`],
    ['IPv6 loopback', (p: number) => `http://[::1]:${p}/ok`],
    ['a name resolving to a private address', (p: number) => `http://rebind.test:${p}/ok`],
  ])('blocks a %s literal or name, without connecting', async (_form, url) => {
    const before = forbidden.hits.size;
    const { record } = await engine.fetch(url(forbidden.port), { retries: 2 });
    expect(record).toMatchObject({ ok: false, status: null, attempts: 1, error: { code: 'blocked' } });
    expect(forbidden.hits.size).toBe(before);
  });

  it('a name with public and private answers connects only to the permitted one', async () => {
    // both origins listen on the same port number only by chance; use the allowed origin's port
    const { record } = await engine.fetch(`http://mixed.test:${allowed.port}/ok`);
    expect(record).toMatchObject({ ok: true, status: 200 });
  });

  it('blocks a redirect from an allowed origin to a forbidden one, hop by hop', async () => {
    const location = encodeURIComponent(`${forbidden.url}/ok`);
    const { record } = await engine.fetch(`${allowed.url}/to?location=${location}`);
    expect(record).toMatchObject({ ok: false, status: 302, redirects: 1, finalUrl: `${forbidden.url}/ok`, error: { code: 'blocked' } });
    expect(forbidden.hits.size).toBe(0);
  });

  it('blocks localhost', async () => {
    const guarded = openFetcher(new AddressGuard({ blockPrivate: true }));
    try {
      const { record } = await guarded.fetch(`http://localhost:${allowed.port}/ok`, { retries: 0 });
      expect(record.error?.code).toBe('blocked');
      expect(record.error?.message).toMatch(/localhost resolves to/);
    } finally {
      await guarded.close();
    }
  });
});
