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

/**
 * A `dns.lookup` replacement that drops the answers the guard refuses, and fails with
 * {@link BlockedAddressError} when none is left, so DNS rebinding to a private address cannot work.
 */
export function guardedLookup(guard: AddressGuard) {
  return function lookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
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
}

/**
 * Builds the Agent for one worker.
 *
 * @example
 * const agent = createAgent({ perHost: 8, guard: AddressGuard.fromEnv() });
 */
export function createAgent({ perHost, guard }: AgentConfig): Agent {
  const base = buildConnector({
    timeout: AGENT_DEFAULTS.connectTimeout,
    ...(guard.blockPrivate ? { lookup: guardedLookup(guard) } : {}),
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
