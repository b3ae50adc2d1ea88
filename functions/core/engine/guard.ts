/**
 * The private-address guard: decides, for each resolved address a connection is about to use,
 * whether it may be reached. It runs inside the connector (see agent.ts), so it sees IP literals,
 * every DNS answer and every redirect hop, not just the URL a user typed.
 */
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../errors.ts';

/** Guard defaults, stated once. */
export const GUARD_DEFAULTS = {
  /**
   * The widest range FANOUT_ALLOW_CIDRS takes without FANOUT_ALLOW_WIDE_CIDRS=1: a /8 of IPv4
   * (10.0.0.0/8 is fine, 0.0.0.0/0 is not) and a /16 of IPv6 (fd00::/16 is fine, fd00::/8 is not).
   */
  minPrefix: { ipv4: 8, ipv6: 16 },
} as const;

/**
 * Ranges no job may reach unless the operator allows them: every entry of IANA's IPv4
 * Special-Purpose Address Registry (whatever its "globally reachable" column: none is a web host),
 * plus multicast.
 */
const PRIVATE_V4 = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // RFC 1918
  ['100.64.0.0', 10], // shared address space (CGNAT)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12], // RFC 1918
  ['192.0.0.0', 24], // IETF protocol assignments (DS-Lite, NAT64 discovery, PCP and TURN anycast)
  ['192.0.2.0', 24], // documentation, TEST-NET-1
  ['192.31.196.0', 24], // AS112-v4
  ['192.52.193.0', 24], // AMT
  ['192.88.99.0', 24], // deprecated 6to4 relay anycast
  ['192.168.0.0', 16], // RFC 1918
  ['192.175.48.0', 24], // AS112 direct delegation
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation, TEST-NET-2
  ['203.0.113.0', 24], // documentation, TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, limited broadcast (255.255.255.255)
] as const;

/**
 * The IPv6 counterpart: IANA's IPv6 Special-Purpose Address Registry, plus multicast and the
 * deprecated site-local range. Forms that carry an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96,
 * 6to4) are judged by that address instead: see {@link embeddedIPv4}.
 */
const PRIVATE_V6 = [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT): not routed on the internet
  ['64:ff9b:1::', 48], // local-use IPv4/IPv6 translation (a private NAT64)
  ['100::', 64], // discard-only
  ['100:0:0:1::', 64], // dummy prefix (RFC 9780)
  ['2001::', 23], // IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID 2001:10::/28 and 2001:20::/28, AMT, AS112, ...
  ['2001:db8::', 32], // documentation
  ['2620:4f:8000::', 48], // AS112 direct delegation
  ['3fff::', 20], // documentation (RFC 9637)
  ['5f00::', 16], // SRv6 SIDs
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed by some stacks)
  ['ff00::', 8], // multicast
] as const;

const privateV4 = new BlockList();
const privateV6 = new BlockList();
for (const [net, prefix] of PRIVATE_V4) privateV4.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of PRIVATE_V6) privateV6.addSubnet(net, prefix, 'ipv6');

/**
 * The IPv4 address an IPv6 address carries, for the forms that reach an IPv4 host: IPv4-mapped
 * (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), NAT64
 * (64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32, whose client address is stored inverted).
 *
 * @example
 * embeddedIPv4('::ffff:127.0.0.1') // '127.0.0.1'
 */
export function embeddedIPv4(address: string): string | undefined {
  const groups = expandIPv6(address);
  if (!groups) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0);
  if (zeros(0, 5) && groups[5] === 0xffff) return v4(groups[6]!, groups[7]!);
  if (zeros(0, 4) && groups[4] === 0xffff && groups[5] === 0) return v4(groups[6]!, groups[7]!);
  if (zeros(0, 6) && (groups[6]! !== 0 || groups[7]! > 1)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!);
  if (groups[0] === 0x2001 && groups[1] === 0) return v4(~groups[6]! & 0xffff, ~groups[7]! & 0xffff);
  return undefined;
}

/** Eight 16-bit groups of an IPv6 address (dotted tails and zone ids handled), or undefined. */
function expandIPv6(address: string): number[] | undefined {
  let text = address.replace(/%.*$/, '');
  if (isIP(text) !== 6) return undefined;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, -dotted[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const parse = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const fill = tail === undefined ? [] : new Array(8 - left.length - right.length).fill(0);
  const groups = [...left, ...fill, ...right];
  return groups.length === 8 ? groups : undefined;
}

/** An address as 16-bit groups: two for IPv4, eight for IPv6. */
function groupsOf(address: string, family: 4 | 6): number[] {
  if (family === 6) return expandIPv6(address)!;
  const [a, b, c, d] = address.split('.').map(Number) as [number, number, number, number];
  return [(a << 8) | b, (c << 8) | d];
}

function formatGroups(groups: number[], family: 4 | 6): string {
  if (family === 4) return `${groups[0]! >> 8}.${groups[0]! & 255}.${groups[1]! >> 8}.${groups[1]! & 255}`;
  // The URL parser prints an IPv6 address in its canonical, compressed form.
  return new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
}

function bare(address: string): string {
  return address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
}

/** Is this address loopback, private, link-local, metadata, CGNAT, special-purpose or multicast? */
export function isPrivateAddress(address: string): boolean {
  const ip = bare(address);
  const family = isIP(ip);
  if (family === 4) return privateV4.check(ip, 'ipv4');
  if (family !== 6) return false;
  const v4 = embeddedIPv4(ip);
  if (v4 !== undefined && privateV4.check(v4, 'ipv4')) return true;
  return privateV6.check(ip, 'ipv6');
}

/** One FANOUT_ALLOW_CIDRS entry, checked. */
interface AllowedRange {
  family: 4 | 6;
  network: string;
  prefix: number;
}

/**
 * Parses one allowed range strictly: an IP address, a slash and a prefix length, no bits set past
 * the prefix, no wider than {@link GUARD_DEFAULTS}.minPrefix unless `wide`. Throws
 * {@link ConfigError} naming the entry.
 */
function parseRange(entry: string, wide: boolean): AllowedRange {
  const text = entry.trim();
  const fail = (why: string) => new ConfigError(`FANOUT_ALLOW_CIDRS: ${JSON.stringify(text)} ${why}`);
  const slash = text.indexOf('/');
  const net = slash === -1 ? text : text.slice(0, slash);
  const bits = slash === -1 ? '' : text.slice(slash + 1);
  const family = isIP(net) as 0 | 4 | 6;
  if (family === 0) throw fail('is not an IP address with a prefix length, such as 10.0.0.0/8 or fd00::/16');
  const width = family === 4 ? 32 : 128;
  if (bits === '') throw fail(`has no prefix length: write ${net}/${width} for this one address`);
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > width) throw fail(`has a prefix length that is not a whole number from 0 to ${width}`);
  const groups = groupsOf(net, family);
  const masked = groups.map((g, i) => {
    const keep = Math.min(16, Math.max(0, prefix - i * 16));
    return keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff;
  });
  if (masked.some((g, i) => g !== groups[i])) {
    throw fail(`has bits set past its prefix: did you mean ${formatGroups(masked, family)}/${prefix}?`);
  }
  const min = family === 4 ? GUARD_DEFAULTS.minPrefix.ipv4 : GUARD_DEFAULTS.minPrefix.ipv6;
  if (prefix < min && !wide) {
    throw fail(`is wider than /${min}: set FANOUT_ALLOW_WIDE_CIDRS=1 as well to allow it, or FANOUT_ALLOW_PRIVATE=1 to turn the guard off`);
  }
  // IPv6 ranges never open IPv4 hosts (see permits): say how to write this one so it does.
  const mapped = family === 6 && prefix >= 96 && groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) throw fail(`is an IPv4-mapped range: write it as IPv4 (${formatGroups(masked.slice(6), 4)}/${prefix - 96})`);
  return { family, network: formatGroups(masked, family), prefix };
}

export interface GuardConfig {
  /** When false, every address may be reached (the one-shot CLI's default). */
  blockPrivate: boolean;
  /** CIDRs reachable even though private, e.g. "127.0.0.2/32" or "fd00::/16"; a prefix length is required. */
  allowCidrs?: string[];
  /** Lets `allowCidrs` hold ranges wider than {@link GUARD_DEFAULTS}.minPrefix (FANOUT_ALLOW_WIDE_CIDRS=1). */
  allowWideCidrs?: boolean;
}

/**
 * Decides whether an address may be connected to. IPv4 ranges open IPv4 addresses (and IPv6 forms
 * that carry one, such as ::ffff:a.b.c.d); IPv6 ranges open IPv6 addresses only, never one that
 * carries an IPv4 address, so `::/0` cannot open 169.254.169.254.
 *
 * @example
 * const guard = new AddressGuard({ blockPrivate: true, allowCidrs: ['127.0.0.2/32'] });
 * guard.permits('127.0.0.2'); // true
 * guard.describe(); // 'private, loopback and link-local addresses blocked; allowed: 127.0.0.2/32 (FANOUT_ALLOW_CIDRS)'
 */
export class AddressGuard {
  readonly blockPrivate: boolean;
  /** As given, so a worker thread can build the same guard. */
  readonly config: GuardConfig;
  private readonly ranges: AllowedRange[];
  private readonly allowedV4 = new BlockList();
  private readonly allowedV6 = new BlockList();

  constructor(config: GuardConfig) {
    this.config = config;
    this.blockPrivate = config.blockPrivate;
    this.ranges = (config.allowCidrs ?? []).filter((c) => c.trim() !== '').map((c) => parseRange(c, config.allowWideCidrs === true));
    for (const { family, network, prefix } of this.ranges) {
      if (family === 4) this.allowedV4.addSubnet(network, prefix, 'ipv4');
      else this.allowedV6.addSubnet(network, prefix, 'ipv6');
    }
  }

  /** Reads FANOUT_ALLOW_PRIVATE, FANOUT_ALLOW_CIDRS and FANOUT_ALLOW_WIDE_CIDRS; the guard is on unless allowed. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, blockByDefault = true): AddressGuard {
    const yes = (value: string | undefined) => value === '1' || value === 'true';
    const cidrs = (env.FANOUT_ALLOW_CIDRS ?? '').split(',').filter((s) => s.trim() !== '');
    return new AddressGuard({
      blockPrivate: blockByDefault && !yes(env.FANOUT_ALLOW_PRIVATE),
      allowCidrs: cidrs,
      allowWideCidrs: yes(env.FANOUT_ALLOW_WIDE_CIDRS),
    });
  }

  /** True when a connection to `address` (an IP) may be made. */
  permits(address: string): boolean {
    if (!this.blockPrivate) return true;
    const ip = bare(address);
    if (!isPrivateAddress(ip)) return true;
    if (this.ranges.length === 0) return false;
    if (isIP(ip) === 4) return this.allowedV4.check(ip, 'ipv4');
    const v4 = embeddedIPv4(ip);
    // An IPv6 form that carries an IPv4 address is opened only by an IPv4 range, and never when
    // the form itself is special-purpose (Teredo, IPv4-translated).
    if (v4 !== undefined) return !privateV6.check(ip, 'ipv6') && this.allowedV4.check(v4, 'ipv4');
    return this.allowedV6.check(ip, 'ipv6');
  }

  /** The guard in one line, for start-up banners: what is blocked and which ranges are open. */
  describe(): string {
    if (!this.blockPrivate) return 'off: jobs may reach private, loopback and link-local addresses (FANOUT_ALLOW_PRIVATE / --allow-private)';
    const how = '--allow-private or FANOUT_ALLOW_CIDRS=ADDRESS/32 opens them';
    if (this.ranges.length === 0) return `private, loopback and link-local addresses blocked; ${how}`;
    return `private, loopback and link-local addresses blocked; allowed: ${this.ranges.map((r) => `${r.network}/${r.prefix}`).join(', ')} (FANOUT_ALLOW_CIDRS)`;
  }
}

