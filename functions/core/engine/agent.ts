/**
 * The undici Agent a worker fetches through: per-origin connection limits, idle sockets closed
 * quickly (so a crawl over many hosts does not pile up file descriptors: Lambda allows 1,024), and
 * the address guard wired into the connector so it sees every connection, literals included.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { AddressGuard, BlockedAddressError } from './guard.ts';

/** Agent defaults, stated once. */
export const AGENT_DEFAULTS = {
  /** Idle keep-alive sockets close after this; an idle origin's pool is dropped with its last socket. */
  keepAliveTimeout: 4_000,
  /** Upper bound on a server's Keep-Alive hint. */
  keepAliveMaxTimeout: 30_000,
  /** TCP + TLS handshake; the whole attempt has its own deadline too. */
  connectTimeout: 10_000,
  /** Response header bytes before the response counts as a protocol error. */
  maxHeaderSize: 64 * 1024,
} as const;

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
/** `dns.lookup`'s shape, as net.connect calls it. */
export type Lookup = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

/**
 * A `dns.lookup` replacement that drops the answers the guard refuses, and fails with
 * {@link BlockedAddressError} when none is left, so DNS rebinding to a private address cannot work.
 */
export function guardedLookup(guard: AddressGuard, resolve: Lookup = dnsLookup as Lookup): Lookup {
  return function lookup(hostname, options, callback) {
    resolve(hostname, { ...options, all: true }, (err, result) => {
      if (err) return callback(err, '');
      const addresses = result as LookupAddress[];
      const permitted = addresses.filter((a) => guard.permits(a.address));
      if (permitted.length === 0) {
        return callback(new BlockedAddressError(hostname, addresses[0]?.address ?? hostname), '');
      }
      if (options.all) return callback(null, permitted);
      callback(null, permitted[0]!.address, permitted[0]!.family);
    });
  };
}

export interface AgentConfig {
  /** Connections per origin. */
  perHost: number;
  guard: AddressGuard;
  /** The resolver (default `dns.lookup`); tests give one that answers without a DNS server. */
  lookup?: Lookup;
}

/**
 * Builds the Agent for one worker.
 *
 * @example
 * const agent = createAgent({ perHost: 8, guard: AddressGuard.fromEnv() });
 */
export function createAgent({ perHost, guard, lookup }: AgentConfig): Agent {
  const resolver = guard.blockPrivate ? guardedLookup(guard, lookup) : lookup;
  const base = buildConnector({
    timeout: AGENT_DEFAULTS.connectTimeout,
    ...(resolver ? { lookup: resolver } : {}),
  } as buildConnector.BuildOptions);
  // undici does not call `lookup` for IP literals: check them here, before any socket is opened.
  const connect: buildConnector.connector = (options, callback) => {
    const host = options.hostname.replace(/^\[|\]$/g, '');
    if (guard.blockPrivate && isIP(host) && !guard.permits(host)) {
      callback(new BlockedAddressError(host, host), null);
      return;
    }
    base(options, callback);
  };
  return new Agent({
    connections: perHost,
    pipelining: 1,
    keepAliveTimeout: AGENT_DEFAULTS.keepAliveTimeout,
    keepAliveMaxTimeout: AGENT_DEFAULTS.keepAliveMaxTimeout,
    maxHeaderSize: AGENT_DEFAULTS.maxHeaderSize,
    connect,
  });
}
