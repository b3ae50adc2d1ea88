import type { LookupAddress } from 'node:dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AddressGuard, embeddedIPv4, GUARD_DEFAULTS, isPrivateAddress } from '../functions/core/engine/guard.ts';
import type { Lookup } from '../functions/core/engine/agent.ts';
import { ConfigError } from '../functions/core/errors.ts';
import { fanout, startServe } from './support/cli.ts';
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

  it.each([
    ['64:ff9b:1::808:808', 'local-use NAT64'],
    ['::ffff:0:808:808', 'IPv4-translated, even of a public address'],
    ['::ffff:0:7f00:1', 'IPv4-translated loopback'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', 'Teredo of a public client (8.8.8.8)'],
    ['2001:2::1', 'benchmarking'],
    ['2001:10::1', 'ORCHID'],
    ['2001:20::1', 'ORCHIDv2'],
    ['3fff::1', 'documentation (3fff::/20)'],
    ['5f00::1', 'SRv6 SIDs'],
    ['100:0:0:1::1', 'dummy prefix'],
    ['2620:4f:8000::1', 'AS112 direct delegation'],
    ['192.88.99.1', '6to4 relay anycast'],
    ['192.31.196.1', 'AS112-v4'],
    ['192.175.48.1', 'AS112 direct delegation'],
    ['192.52.193.1', 'AMT'],
  ])('%s (%s) is private, as IANA special-purpose', (address) => {
    expect(isPrivateAddress(address)).toBe(true);
  });

  it.each([
    '93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '2001:4860:4860::8888',
    '2001:200::1', '64:ff9b::808:808', '2002:808:808::1', '3fff:1000::1', '192.88.100.1',
  ])(
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
    expect(embeddedIPv4('::ffff:0:7f00:1')).toBe('127.0.0.1');
    // Teredo keeps its client's address inverted ("obfuscated")
    expect(embeddedIPv4('2001:0:4136:e378:8000:63bf:3fff:fdd2')).toBe('192.0.2.45');
  });
});

describe('AddressGuard', () => {
  it('permits everything when off', () => {
    expect(new AddressGuard({ blockPrivate: false }).permits('127.0.0.1')).toBe(true);
  });

  it('opens only the CIDRs allowed, in every form', () => {
    const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.2/32', 'fd00::/16'] });
    expect(guard.permits('127.0.0.2')).toBe(true);
    expect(guard.permits('::ffff:127.0.0.2')).toBe(true);
    expect(guard.permits('127.0.0.1')).toBe(false);
    expect(guard.permits('fd00::5')).toBe(true);
    expect(guard.permits('fd01::5')).toBe(false);
    expect(guard.permits('fc00::5')).toBe(false);
    expect(guard.permits('8.8.8.8')).toBe(true);
  });

  it('describes itself in one line, ranges in canonical form', () => {
    expect(new AddressGuard({ blockPrivate: false }).describe()).toBe(
      'off: jobs may reach private, loopback and link-local addresses (FANOUT_ALLOW_PRIVATE / --allow-private)',
    );
    expect(new AddressGuard({ blockPrivate: true }).describe()).toBe(
      'private, loopback and link-local addresses blocked; --allow-private or FANOUT_ALLOW_CIDRS=ADDRESS/32 opens them',
    );
    expect(new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.2/32', ' FD00:0::/16 '] }).describe()).toBe(
      'private, loopback and link-local addresses blocked; allowed: 127.0.0.2/32, fd00::/16 (FANOUT_ALLOW_CIDRS)',
    );
  });

  it('keeps Teredo, IPv4-translated and local-use NAT64 blocked even when the IPv4 they carry is allowed', () => {
    const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.1/32', '192.0.2.45/32'] });
    expect(guard.permits('::ffff:127.0.0.1')).toBe(true);
    expect(guard.permits('2002:7f00:1::')).toBe(true);
    expect(guard.permits('2001:0:4136:e378:8000:63bf:3fff:fdd2')).toBe(false);
    expect(guard.permits('::ffff:0:7f00:1')).toBe(false);
    expect(guard.permits('64:ff9b:1::7f00:1')).toBe(false);
    // a private NAT64 is the operator's to open, with an IPv6 range
    expect(new AddressGuard({ blockPrivate: true, allowCidrs: ['64:ff9b:1::/48'] }).permits('64:ff9b:1::7f00:1')).toBe(true);
  });

  it('reads the environment', () => {
    expect(AddressGuard.fromEnv({}).blockPrivate).toBe(true);
    expect(AddressGuard.fromEnv({ FANOUT_ALLOW_PRIVATE: '1' }).blockPrivate).toBe(false);
    expect(AddressGuard.fromEnv({}, false).blockPrivate).toBe(false);
    expect(AddressGuard.fromEnv({ FANOUT_ALLOW_CIDRS: '10.0.0.0/8, 127.0.0.1/32,' }).permits('10.9.9.9')).toBe(true);
    expect(() => AddressGuard.fromEnv({ FANOUT_ALLOW_CIDRS: '10.0.0/33' })).toThrow(ConfigError);
  });
});

describe('FANOUT_ALLOW_CIDRS, parsed strictly', () => {
  const parse = (cidrs: string, wide?: string) => AddressGuard.fromEnv({ FANOUT_ALLOW_CIDRS: cidrs, ...(wide ? { FANOUT_ALLOW_WIDE_CIDRS: wide } : {}) });

  it.each([
    ['127.0.0.2/', /"127\.0\.0\.2\/" has no prefix length: write 127\.0\.0\.2\/32/],
    ['10.0.0.1', /"10\.0\.0\.1" has no prefix length/],
    ['fd00::1', /"fd00::1" has no prefix length: write fd00::1\/128/],
    ['10.0.0/33', /"10\.0\.0\/33" is not an IP address/],
    ['10.0.0.0/33', /prefix length that is not a whole number from 0 to 32/],
    ['10.0.0.0/8x', /prefix length that is not/],
    ['10.0.0.0/-1', /prefix length that is not/],
    ['fd00::/129', /from 0 to 128/],
    ['localhost/32', /is not an IP address/],
    ['10.1.2.3/8', /bits set past its prefix: did you mean 10\.0\.0\.0\/8\?/],
    ['fd00::1/16', /did you mean fd00::\/16\?/],
    ['::ffff:127.0.0.2/128', /IPv4-mapped range: write it as IPv4 \(127\.0\.0\.2\/32\)/],
  ])('refuses %j, naming the entry', (entry, message) => {
    expect(() => parse(`10.0.0.0/8,${entry}`)).toThrow(ConfigError);
    expect(() => parse(`10.0.0.0/8,${entry}`)).toThrow(message);
  });

  it.each(['0.0.0.0/0', '126.0.0.0/7', '::/0', 'fd00::/8', '2000::/3'])('refuses %s, wider than the stated size, unless FANOUT_ALLOW_WIDE_CIDRS=1', (entry) => {
    expect(() => parse(entry)).toThrow(/is wider than \/(8|16): set FANOUT_ALLOW_WIDE_CIDRS=1/);
    expect(() => parse(entry, '1')).not.toThrow();
  });

  it('states the widest ranges once', () => {
    expect(GUARD_DEFAULTS.minPrefix).toEqual({ ipv4: 8, ipv6: 16 });
    expect(() => parse('10.0.0.0/8,fd00::/16')).not.toThrow();
  });

  it('an IPv4 range, however wide, opens no IPv6 address', () => {
    const guard = parse('0.0.0.0/0', '1');
    expect(guard.permits('169.254.169.254')).toBe(true);
    expect(guard.permits('::ffff:169.254.169.254')).toBe(true); // the same IPv4 host
    for (const v6 of ['::1', 'fe80::1', 'fd00::1', 'fc00::1', '64:ff9b:1::1', '2001:db8::1']) expect(guard.permits(v6)).toBe(false);
  });

  it('an IPv6 range, however wide, opens no IPv4 address, in any IPv6 form', () => {
    const guard = parse('::/0', '1');
    for (const v6 of ['::1', 'fe80::1', 'fd00::1', '2001:db8::1']) expect(guard.permits(v6)).toBe(true);
    for (const v4 of ['169.254.169.254', '127.0.0.1', '10.0.0.1', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe', '64:ff9b::a9fe:a9fe', '2002:a9fe:a9fe::', '::127.0.0.1']) {
      expect(guard.permits(v4), v4).toBe(false);
    }
  });

  it('fanout serve exits 2 naming the entry, and prints the guard at start-up', async () => {
    const run = await fanout(['serve', '--port', '0'], { env: { FANOUT_ALLOW_CIDRS: '127.0.0.2/' } });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/FANOUT_ALLOW_CIDRS: "127\.0\.0\.2\/" has no prefix length/);
    const dir = mkdtempSync(join(tmpdir(), 'fanout-guard-'));
    const server = await startServe(['--data-dir', dir, '--workers', '1'], { FANOUT_ALLOW_CIDRS: '127.0.0.2/32' });
    try {
      await expect.poll(() => server.output()).toMatch(/address guard: private, loopback and link-local addresses blocked; allowed: 127\.0\.0\.2\/32/);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
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
    // The record says how an operator would allow it.
    expect(record.error!.message).toMatch(/FANOUT_ALLOW_CIDRS=\S+\/(32|128) or FANOUT_ALLOW_PRIVATE=1/);
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
