/**
 * The private-address guard: decides, for each resolved address a connection is about to use,
 * whether it may be reached. It runs inside the connector (see agent.ts), so it sees IP literals,
 * every DNS answer and every redirect hop, not just the URL a user typed.
 */
import { BlockList, isIP, isIPv4 } from 'node:net';

/** Ranges no job may reach unless the operator allows them. */
const PRIVATE_V4 = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // RFC 1918
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12], // RFC 1918
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // TEST-NET-1
  ['192.168.0.0', 16], // RFC 1918
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // TEST-NET-2
  ['203.0.113.0', 24], // TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const;

const PRIVATE_V6 = [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed by some stacks)
  ['ff00::', 8], // multicast
] as const;

const privateRanges = new BlockList();
for (const [net, prefix] of PRIVATE_V4) privateRanges.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of PRIVATE_V6) privateRanges.addSubnet(net, prefix, 'ipv6');

/**
 * The IPv4 address an IPv6 address carries, for the forms that reach an IPv4 host:
 * IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
 */
export function embeddedIPv4(address: string): string | undefined {
  const groups = expandIPv6(address);
  if (!groups) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0);
  if (zeros(0, 5) && groups[5] === 0xffff) return v4(groups[6]!, groups[7]!);
  if (zeros(0, 6) && (groups[6]! !== 0 || groups[7]! > 1)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!);
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

/** Is this address loopback, private, link-local, metadata, CGNAT, reserved or multicast? */
export function isPrivateAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 4) return privateRanges.check(bare, 'ipv4');
  if (family !== 6) return false;
  const v4 = embeddedIPv4(bare);
  if (v4 !== undefined && privateRanges.check(v4, 'ipv4')) return true;
  return privateRanges.check(bare, 'ipv6');
}

export interface GuardConfig {
  /** When false, every address may be reached (the one-shot CLI's default). */
  blockPrivate: boolean;
  /** CIDRs reachable even though private, e.g. "127.0.0.2/32" or "fd00::/8". */
  allowCidrs?: string[];
}

/** Decides whether an address may be connected to. */
export class AddressGuard {
  readonly blockPrivate: boolean;
  /** As given, so a worker thread can build the same guard. */
  readonly config: GuardConfig;
  private readonly allowed = new BlockList();
  private readonly allowCount: number;

  constructor(config: GuardConfig) {
    this.config = config;
    this.blockPrivate = config.blockPrivate;
    const cidrs = config.allowCidrs ?? [];
    for (const cidr of cidrs) {
      const [net, bits] = cidr.trim().split('/');
      const family = isIP(net ?? '');
      const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
      if (!family || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
        throw new Error(`FANOUT_ALLOW_CIDRS: not a CIDR: ${JSON.stringify(cidr)}`);
      }
      this.allowed.addSubnet(net!, prefix, family === 4 ? 'ipv4' : 'ipv6');
    }
    this.allowCount = cidrs.length;
  }

  /** Reads FANOUT_ALLOW_PRIVATE and FANOUT_ALLOW_CIDRS; the guard is on unless allowed. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, blockByDefault = true): AddressGuard {
    const allowPrivate = env.FANOUT_ALLOW_PRIVATE === '1' || env.FANOUT_ALLOW_PRIVATE === 'true';
    const cidrs = (env.FANOUT_ALLOW_CIDRS ?? '').split(',').filter((s) => s.trim() !== '');
    return new AddressGuard({ blockPrivate: blockByDefault && !allowPrivate, allowCidrs: cidrs });
  }

  /** True when a connection to `address` (an IP) may be made. */
  permits(address: string): boolean {
    if (!this.blockPrivate) return true;
    const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
    if (!isPrivateAddress(bare)) return true;
    if (this.allowCount === 0) return false;
    if (isIPv4(bare)) return this.allowed.check(bare, 'ipv4');
    const v4 = embeddedIPv4(bare);
    return this.allowed.check(bare, 'ipv6') || (v4 !== undefined && this.allowed.check(v4, 'ipv4'));
  }
}

/** Raised by the connector when the guard refuses an address; the record gets `blocked`. */
export class BlockedAddressError extends Error {
  readonly code = 'FANOUT_BLOCKED';
  override name = 'BlockedAddressError';
  constructor(
    readonly host: string,
    readonly address: string,
  ) {
    super(
      host === address
        ? `${address} is a private address; the server's guard blocks it`
        : `${host} resolves to ${address}, a private address; the server's guard blocks it`,
    );
  }
}
