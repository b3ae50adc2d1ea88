/**
 * The undici Agent a worker fetches through: per-origin connection limits, a total socket budget
 * shared by all of a worker's Agents (so a crawl over many hosts cannot pile up file descriptors:
 * Lambda allows 1,024), and the address guard wired into the connector so it sees every
 * connection, literals included.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { Agent, buildConnector } from 'undici';
import { ConfigError } from '../errors.ts';
import { AddressGuard, BlockedAddressError } from './guard.ts';
import { SocketBudget } from './socket-budget.ts';

/** Agent defaults, stated once. */
export const AGENT_DEFAULTS = {
  /** Idle keep-alive sockets close after this; an idle origin's pool is dropped with its last socket. */
  keepAliveTimeout: 4_000,
  /** Upper bound on a server's Keep-Alive hint. */
  keepAliveMaxTimeout: 30_000,
  /** TCP + TLS handshake; the whole attempt has its own deadline too. */
  connectTimeout: 10_000,
  /**
   * Response header bytes before the response counts as a protocol error: real sites send up to
   * ~80 KB (long cookies, CSP); browsers accept 256 KiB (Chrome), and so does fanout.
   */
  maxHeaderSize: 256 * 1024,
  /**
   * Open fetch sockets per worker, all origins together (FANOUT_MAX_SOCKETS overrides it). A Lambda
   * has 1,024 descriptors; the rest is left to the process itself (~30: stdio, epoll, libuv's
   * pipes and threads) and to the AWS SDK's own keep-alive sockets to S3 and SQS (the SDK allows
   * 50 per client), so 256 keeps a worker far from EMFILE with room for a larger SDK pool.
   */
  maxSockets: 256,
} as const;

/**
 * The socket budget from FANOUT_MAX_SOCKETS, else {@link AGENT_DEFAULTS}.maxSockets: the one place
 * that variable is read.
 *
 * @example
 * maxSocketsFromEnv({ FANOUT_MAX_SOCKETS: '128' }) // 128
 */
export function maxSocketsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.FANOUT_MAX_SOCKETS?.trim();
  if (!text) return AGENT_DEFAULTS.maxSockets;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) {
    throw new ConfigError(`FANOUT_MAX_SOCKETS: expected a whole number >= 1, got ${JSON.stringify(text)}`);
  }
  return value;
}

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
  /** The worker's socket budget, shared by all its Agents; none means no total limit. */
  budget?: SocketBudget;
  /** The resolver (default `dns.lookup`); tests give one that answers without a DNS server. */
  lookup?: Lookup;
  /** Skip TLS certificate verification (the job option `insecure`). */
  insecure?: boolean;
  /** PEM certificates trusted besides the system's roots (the job option `ca`). */
  ca?: string | null;
}

/**
 * Builds the Agent for one worker.
 *
 * @example
 * const agent = createAgent({ perHost: 8, guard: AddressGuard.fromEnv(), budget: new SocketBudget(256) });
 */
export function createAgent({ perHost, guard, budget, lookup, insecure = false, ca }: AgentConfig): Agent {
  const resolver = guard.blockPrivate ? guardedLookup(guard, lookup) : lookup;
  const base = buildConnector({
    timeout: AGENT_DEFAULTS.connectTimeout,
    ...(resolver ? { lookup: resolver } : {}),
    ...(insecure ? { rejectUnauthorized: false } : {}),
    // Node's `ca` replaces the default roots: keep them, so a private CA adds to what is trusted.
    ...(ca ? { ca: [...rootCertificates, ca] } : {}),
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
    ...(budget ? { factory: budget.factory(connect) } : { connect }),
  });
}
