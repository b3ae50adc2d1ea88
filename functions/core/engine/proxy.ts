/**
 * Fetching through HTTP proxies: the job option `proxy` (every request of the job through one
 * proxy), and in `fanout fetch` the standard environment variables (HTTP_PROXY, HTTPS_PROXY,
 * NO_PROXY, lower case first). Requests go through undici's ProxyAgent: plain-http targets as
 * absolute-form requests (`GET http://host/path`), https targets through a CONNECT tunnel, TLS to the
 * target inside it (with the job's insecure/ca/http2). agent.ts composes it with the socket budget
 * and the address guard; this file routes each request and checks its target.
 *
 * Credentials never travel in a job's options: options are stored in job.json, sent in queue
 * messages and returned by the API, while the workers need the secret itself (redacting it would
 * lose it). A worker takes them from FANOUT_PROXY_AUTH (user:password), as headers come from
 * `headerEnv`; in `fanout fetch` the environment's proxy URLs may carry their own.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { Dispatcher } from 'undici';
import type { Lookup } from './agent.ts';
import { BlockedAddressError, ConfigError, ProxyRefusedError } from '../errors.ts';
import type { AddressGuard } from './guard.ts';
import { PROXY_DEFAULTS, proxyUrlProblem } from './proxy-url.ts';
import { failRequest, WrappedDispatcher } from './wrapped-dispatcher.ts';

export { PROXY_DEFAULTS, proxyUrlProblem };

/** Where requests go: a proxy URL per target scheme (null: direct) and the hosts that bypass them. */
export interface ProxyRoutes {
  http: string | null;
  https: string | null;
  /** NO_PROXY's syntax: `host`, `.domain`, `*.domain`, `host:port`, an IP, a CIDR, or `*` for all. */
  noProxy: string;
}

/**
 * Routes for the job option `proxy`: every request through it.
 *
 * @example
 * routesForProxy('http://127.0.0.1:3128') // { http: 'http://127.0.0.1:3128', https: 'http://127.0.0.1:3128', noProxy: '' }
 */
export function routesForProxy(url: string): ProxyRoutes {
  return { http: url, https: url, noProxy: '' };
}

/**
 * Routes from HTTP_PROXY / HTTPS_PROXY / NO_PROXY (lower-case names first), as curl reads them:
 * HTTPS_PROXY is for https targets only, HTTP_PROXY for http targets only. Null when neither is set.
 *
 * @throws {ConfigError} naming the variable when a proxy URL is invalid.
 * @example
 * proxyRoutesFromEnv({ HTTPS_PROXY: 'http://127.0.0.1:3128', NO_PROXY: 'localhost' })
 * // { http: null, https: 'http://127.0.0.1:3128', noProxy: 'localhost' }
 */
export function proxyRoutesFromEnv(env: NodeJS.ProcessEnv = process.env): ProxyRoutes | null {
  const read = (lower: string, upper: string): string | null => {
    const [name, value] = env[lower]?.trim() ? [lower, env[lower]!.trim()] : [upper, env[upper]?.trim() ?? ''];
    if (!value) return null;
    // A bare host:port, as many set it, means http://host:port.
    const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
    const problem = proxyUrlProblem(url, true);
    if (problem) throw new ConfigError(`${name}: ${JSON.stringify(value)} ${problem}`);
    return url;
  };
  const http = read('http_proxy', 'HTTP_PROXY');
  const https = read('https_proxy', 'HTTPS_PROXY');
  if (!http && !https) return null;
  return { http, https, noProxy: (env.no_proxy?.trim() || env.NO_PROXY?.trim()) ?? '' };
}

/**
 * A proxy URL without its credentials, and the Proxy-Authorization value to send: from the URL,
 * else from `auth` (`user:password`, FANOUT_PROXY_AUTH).
 *
 * @example
 * proxyEndpoint('http://me:pw@proxy:3128/') // { uri: 'http://proxy:3128/', token: 'Basic bWU6cHc=' }
 */
export function proxyEndpoint(uri: string, auth?: string): { uri: string; token?: string } {
  const url = new URL(uri);
  let credentials = auth;
  if (url.username || url.password) {
    credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    url.username = '';
    url.password = '';
  }
  return { uri: url.href, ...(credentials ? { token: `Basic ${Buffer.from(credentials).toString('base64')}` } : {}) };
}

/**
 * FANOUT_PROXY_AUTH checked: `user:password`, or undefined when unset.
 *
 * @throws {ConfigError} when it has no colon, or is a Secrets Manager ARN that nobody resolved (only
 * the AWS worker reads the secret it names): it must never reach a proxy as credentials.
 */
export function proxyAuthFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[PROXY_DEFAULTS.authEnv];
  if (!value) return undefined;
  if (/^arn:aws[\w-]*:secretsmanager:/.test(value.trim())) {
    throw new ConfigError(`${PROXY_DEFAULTS.authEnv}: holds a Secrets Manager ARN; only the AWS worker resolves it (give user:password here)`);
  }
  if (!value.includes(':')) throw new ConfigError(`${PROXY_DEFAULTS.authEnv}: expected user:password`);
  return value;
}

/**
 * FANOUT_PROXY_AUTH_FOR: the proxies (comma-separated http(s) URLs, as jobs name them) that server
 * modes send FANOUT_PROXY_AUTH to, as origins; unset, none.
 *
 * @throws {ConfigError} naming an entry that is not an http(s) URL.
 * @example
 * proxyAuthForFromEnv({ FANOUT_PROXY_AUTH_FOR: 'http://proxy.corp:3128' }) // ['http://proxy.corp:3128']
 */
export function proxyAuthForFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const entries = (env[PROXY_DEFAULTS.authForEnv] ?? '').split(',').map((e) => e.trim()).filter(Boolean);
  return entries.map((entry) => {
    const url = URL.canParse(entry) ? new URL(entry) : undefined;
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new ConfigError(`${PROXY_DEFAULTS.authForEnv}: ${JSON.stringify(entry)} is not an http:// or https:// proxy URL`);
    return url.origin;
  });
}

/** NO_PROXY, parsed once: which targets go direct. */
export class NoProxy {
  private readonly all: boolean;
  private readonly hosts: { host: string; port: number }[] = [];
  private readonly ranges = new BlockList();
  private hasRanges = false;

  constructor(text: string) {
    const entries = text.split(/[\s,]+/).filter(Boolean);
    this.all = entries.includes('*');
    for (const entry of entries) {
      const cidr = /^([^/]+)\/(\d{1,3})$/.exec(entry);
      const family = cidr ? isIP(cidr[1]!) : 0;
      if (cidr && family) {
        try {
          this.ranges.addSubnet(cidr[1]!, Number(cidr[2]), family === 4 ? 'ipv4' : 'ipv6');
          this.hasRanges = true;
        } catch {
          // an impossible prefix matches nothing, as in curl
        }
        continue;
      }
      // [v6]:port, [v6], host:port, a bare IPv6 address, or a host.
      const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) ?? (isIP(entry) ? null : /^([^:]+):(\d+)$/.exec(entry));
      const host = (m ? m[1]! : entry).toLowerCase().replace(/^\*?\./, '');
      this.hosts.push({ host, port: m?.[2] ? Number(m[2]) : 0 });
    }
  }

  /** True when `target` is to be fetched without the proxy. */
  bypasses(target: URL): boolean {
    if (this.all) return true;
    const host = bare(target.hostname).toLowerCase();
    const port = Number(target.port) || (target.protocol === 'https:' ? 443 : 80);
    for (const entry of this.hosts) {
      if (entry.port && entry.port !== port) continue;
      if (host === entry.host || host.endsWith(`.${entry.host}`)) return true;
    }
    const family = isIP(host);
    return this.hasRanges && family !== 0 && this.ranges.check(host, family === 4 ? 'ipv4' : 'ipv6');
  }
}

function bare(host: string): string {
  return host.replace(/^\[|\]$/g, '');
}

/**
 * Resolves a proxied request's target and refuses it when any answer is one the guard blocks. The
 * proxy connects to the target, not fanout's connector, so the check is made here, before the
 * request is sent to the proxy; and every answer must pass (the proxy may pick any of them).
 * Remaining risk: the proxy resolves the name again, so a DNS server that answers a public
 * address now and a private one a moment later (rebinding) can still steer the proxy; only the
 * proxy's own rules (e.g. squid's `http_access deny to_localnet`) close that.
 */
export function checkTarget(host: string, guard: AddressGuard, lookup: Lookup = dnsLookup as Lookup): Promise<void> {
  const name = bare(host);
  if (isIP(name)) {
    return guard.permits(name) ? Promise.resolve() : Promise.reject(new BlockedAddressError(name, name));
  }
  return new Promise((resolve, reject) => {
    lookup(name, { all: true }, (err, result) => {
      if (err) return reject(err);
      const addresses = Array.isArray(result) ? result : [{ address: result, family: isIP(result) } as LookupAddress];
      const refused = addresses.find((a) => !guard.permits(a.address));
      if (refused) return reject(new BlockedAddressError(name, refused.address));
      resolve();
    });
  });
}


/** undici's words for a proxy's refusal, to {@link ProxyRefusedError}. */
function proxyError(error: Error, proxy: string): Error {
  const tunnel = /^Proxy response \((\d{3})\) !== 200/.exec(error.message);
  if (tunnel) return new ProxyRefusedError(proxy, Number(tunnel[1]));
  if (/Proxy Authentication Required \(407\)/.test(error.message)) return new ProxyRefusedError(proxy, 407);
  return error;
}

/** Passes everything to the request's handler, with a proxy's refusals said plainly. */
class ProxiedHandler implements Dispatcher.DispatchHandler {
  constructor(
    private readonly inner: Dispatcher.DispatchHandler,
    private readonly proxy: string,
  ) {}
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.inner.onRequestStart?.(controller, context);
  }
  onRequestUpgrade(controller: Dispatcher.DispatchController, status: number, headers: never, socket: never): void {
    this.inner.onRequestUpgrade?.(controller, status, headers, socket);
  }
  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: never, message?: string): void {
    this.inner.onResponseStart?.(controller, status, headers, message);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.inner.onResponseData?.(controller, chunk);
  }
  onResponseEnd(controller: Dispatcher.DispatchController, trailers: never): void {
    this.inner.onResponseEnd?.(controller, trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.inner.onResponseError?.(controller, proxyError(error, this.proxy));
  }
}

export interface ProxiedDispatcherConfig {
  routes: ProxyRoutes;
  /** For targets NO_PROXY names, or whose scheme has no proxy. */
  direct: Dispatcher;
  /** Builds the dispatcher that reaches targets through the proxy at `uri` (undici's ProxyAgent). */
  viaProxy: (uri: string) => Dispatcher;
  guard: AddressGuard;
  lookup?: Lookup;
}

/**
 * Sends each request to its proxy (or directly), after the guard has checked its target.
 *
 * @example
 * const dispatcher = new ProxiedDispatcher({ routes: routesForProxy('http://127.0.0.1:3128'), direct: agent, viaProxy, guard });
 */
export class ProxiedDispatcher extends WrappedDispatcher {
  private readonly noProxy: NoProxy;
  private readonly proxies = new Map<string, Dispatcher>();

  constructor(private readonly config: ProxiedDispatcherConfig) {
    super();
    this.noProxy = new NoProxy(config.routes.noProxy);
  }

  protected owned(): Dispatcher[] {
    return [this.config.direct, ...this.proxies.values()];
  }

  private proxyFor(uri: string): Dispatcher {
    let proxy = this.proxies.get(uri);
    if (!proxy) this.proxies.set(uri, (proxy = this.config.viaProxy(uri)));
    return proxy;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    let target: URL;
    try {
      target = new URL(String(options.origin));
    } catch {
      return this.config.direct.dispatch(options, handler); // undici reports the bad origin
    }
    const uri = target.protocol === 'https:' ? this.config.routes.https : this.config.routes.http;
    if (!uri || this.noProxy.bypasses(target)) return this.config.direct.dispatch(options, handler);
    // ProxyAgent writes a Host header into the object it is given: hand it a copy, so the caller's
    // headers (reused on the next redirect hop) keep none. The options object itself is passed on.
    const headers = options.headers;
    if (Array.isArray(headers)) options.headers = [...headers];
    else if (headers && typeof headers === 'object') options.headers = { ...(headers as Record<string, string>) };
    const proxy = this.proxyFor(uri);
    // The handler API of the exchange (onRequestStart...) gets a proxy's refusals said plainly.
    if (typeof handler.onRequestStart === 'function') handler = new ProxiedHandler(handler, new URL(uri).host);
    const { guard } = this.config;
    if (!guard.blockPrivate) return proxy.dispatch(options, handler);
    checkTarget(target.hostname, guard, this.config.lookup).then(
      () => proxy.dispatch(options, handler),
      (error: Error) => failRequest(handler, error),
    );
    return true;
  }
}
