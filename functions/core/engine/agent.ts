/**
 * The undici Agent a worker fetches through: per-origin connection limits, a total socket budget
 * shared by all of a worker's Agents (so a crawl over many hosts cannot pile up file descriptors:
 * Lambda allows 1,024), and the address guard wired into the connector so it sees every
 * connection, literals included; TLS settings, HTTP/2 by ALPN, and proxies (proxy.ts).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import { rootCertificates, type TLSSocket } from 'node:tls';
import { Agent, Pool, ProxyAgent, buildConnector, type Client, type Dispatcher } from 'undici';
import { BlockedAddressError, ConfigError } from '../errors.ts';
import { AddressGuard } from './guard.ts';
import { ProxiedDispatcher, proxyEndpoint, type ProxyRoutes } from './proxy.ts';
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
  /**
   * The same for the embedded runtime (`fanout fetch`, `fanout serve`), per worker thread: no
   * Lambda's 1,024 there (Node raises its soft descriptor limit to the hard one at start), so a job
   * of `--concurrency 500` on one host is not cut to 256 requests in flight (bench scenario b).
   */
  localMaxSockets: 1024,
  /**
   * Requests at once on one HTTP/2 connection (with `http2`, when the server chose h2): undici
   * otherwise sends one request per connection. 100 is the least a server should allow (RFC 9113).
   */
  h2Streams: 100,
} as const;

/**
 * The socket budget from FANOUT_MAX_SOCKETS, else {@link AGENT_DEFAULTS}.maxSockets: the one place
 * that variable is read.
 *
 * @example
 * maxSocketsFromEnv({ FANOUT_MAX_SOCKETS: '128' }) // 128
 */
export function maxSocketsFromEnv(env: NodeJS.ProcessEnv = process.env, fallback: number = AGENT_DEFAULTS.maxSockets): number {
  const text = env.FANOUT_MAX_SOCKETS?.trim();
  if (!text) return fallback;
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
  /** Offer HTTP/2 in TLS's ALPN (the job option `http2`); the server chooses, HTTP/1.1 otherwise. */
  http2?: boolean;
  /** Proxies to reach targets through (the job option `proxy`, or the environment in `fanout fetch`). */
  proxy?: ProxyRoutes | null;
  /** `user:password` for proxies whose URL has none (FANOUT_PROXY_AUTH). */
  proxyAuth?: string;
}

/**
 * A connector with the address guard in it: DNS answers through {@link guardedLookup}, and IP
 * literals checked here, since undici does not call `lookup` for them.
 */
function guardedConnector(guard: AddressGuard, lookup: Lookup | undefined, tls: buildConnector.BuildOptions): buildConnector.connector {
  const resolver = guard.blockPrivate ? guardedLookup(guard, lookup) : lookup;
  const base = buildConnector({
    timeout: AGENT_DEFAULTS.connectTimeout,
    ...(resolver ? { lookup: resolver } : {}),
    ...tls,
  } as buildConnector.BuildOptions);
  return (options, callback) => {
    const host = options.hostname.replace(/^\[|\]$/g, '');
    if (guard.blockPrivate && isIP(host) && !guard.permits(host)) {
      callback(new BlockedAddressError(host, host), null);
      return;
    }
    base(options, callback);
  };
}

/**
 * Builds the dispatcher for one worker and one set of connection settings: an Agent, or with a
 * proxy, a router over undici's ProxyAgent (see proxy.ts) whose sockets also count in the budget.
 *
 * @example
 * const agent = createAgent({ perHost: 8, guard: AddressGuard.fromEnv(), budget: new SocketBudget(256) });
 */
export function createAgent(config: AgentConfig): Dispatcher {
  const { perHost, guard, budget, lookup, insecure = false, ca, http2 = false, proxy, proxyAuth } = config;
  // The target's TLS: Node's `ca` replaces the default roots, so keep them and add the private CA.
  const targetTls = {
    ...(insecure ? { rejectUnauthorized: false } : {}),
    ...(ca ? { ca: [...rootCertificates, ca] } : {}),
    allowH2: http2,
  } as buildConnector.BuildOptions;
  const poolOptions = {
    connections: perHost,
    pipelining: 1,
    keepAliveTimeout: AGENT_DEFAULTS.keepAliveTimeout,
    keepAliveMaxTimeout: AGENT_DEFAULTS.keepAliveMaxTimeout,
    maxHeaderSize: AGENT_DEFAULTS.maxHeaderSize,
    allowH2: http2,
  };
  // One Pool per origin, its Clients opening sockets through `connect` (within the budget if any).
  // With HTTP/2, a connection on which the server chose h2 takes many requests at once.
  const multiplex = http2
    ? (client: Client, socket: Socket) => {
        client.pipelining = (socket as TLSSocket).alpnProtocol === 'h2' ? AGENT_DEFAULTS.h2Streams : 1;
      }
    : undefined;
  const pools = (origin: string | URL, options: object, connect: buildConnector.connector): Dispatcher =>
    budget ? budget.factory(connect, multiplex)(origin, options) : new Pool(origin, { ...options, connect });
  const direct = guardedConnector(guard, lookup, targetTls);
  const agent = new Agent({ ...poolOptions, factory: (origin: string | URL, options: object) => pools(origin, options, direct) });
  if (!proxy) return agent;

  // To the proxy itself: guarded like any connection (a proxy on loopback must be allowed in server
  // modes), HTTP/1.1. An https:// proxy's certificate is checked against the system's roots plus the
  // job's `ca` (a private CA often signs both); `insecure` is the target's only, never the proxy's.
  const proxyConnector = guardedConnector(guard, lookup, ca ? ({ ca: [...rootCertificates, ca] } as buildConnector.BuildOptions) : {});
  const toProxy: buildConnector.connector = (options, callback) =>
    proxyConnector(options, (...args: Parameters<buildConnector.Callback>) => {
      const error = args[0] as (Error & { code?: string }) | null;
      if (error?.code === 'FANOUT_BLOCKED') {
        error.message = `the proxy ${options.hostname}:${options.port}: ${error.message} (FANOUT_ALLOW_CIDRS can allow the proxy's address)`;
      }
      callback(...args);
    });
  const viaProxy = (uri: string): Dispatcher => {
    const endpoint = proxyEndpoint(uri, proxyAuth);
    const proxyOrigin = new URL(endpoint.uri).origin;
    return new ProxyAgent({
      ...poolOptions,
      uri: endpoint.uri,
      ...(endpoint.token ? { token: endpoint.token } : {}),
      // http:// targets as absolute-form requests (what proxies log and filter), https:// through CONNECT.
      proxyTunnel: false,
      requestTls: targetTls,
      // The CONNECT requests: the socket each opens becomes its tunnel's, counted by the pool that
      // asked for the tunnel (below), so it is not counted here too. A proxy that accepts the
      // connection but never answers the CONNECT gives up after the connect timeout.
      clientFactory: (origin: URL, options: object) =>
        new Pool(origin, { ...options, connect: toProxy, headersTimeout: AGENT_DEFAULTS.connectTimeout }),
      factory: (origin: string | URL, options: object) => {
        // The pool ProxyAgent keeps per http:// target talks to the proxy itself; the others open
        // each connection as a tunnel, through the opener ProxyAgent gives them.
        if (new URL(String(origin)).origin === proxyOrigin) return pools(origin, { ...poolOptions, allowH2: false }, toProxy);
        const tunnel = (options as { connect?: unknown }).connect;
        if (typeof tunnel !== 'function') throw new TypeError('ProxyAgent gave no tunnel opener');
        return pools(origin, poolOptions, tunnel as buildConnector.connector);
      },
    } as ProxyAgent.Options);
  };
  return new ProxiedDispatcher({ routes: proxy, direct: agent, viaProxy, guard, lookup });
}
