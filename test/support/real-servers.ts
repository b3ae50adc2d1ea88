/**
 * Real servers of other makers, from Debian, for tests that compare fanout with the web as it is:
 * nginx, lighttpd, python3-httpbin under gunicorn, and tinyproxy. Each runs in the foreground as the
 * current user on a free loopback port, with its config, logs and data in a temporary folder that
 * `stop()` removes. A missing binary is an error naming the Debian package (`.ci/run` installs them):
 * nothing is skipped silently.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** The self-signed test certificate (CN localhost, SAN 127.0.0.1 and localhost), for TLS and HTTP/2 tests. */
export const TEST_CERT = {
  cert: join(FIXTURES, 'self-signed.crt'),
  key: join(FIXTURES, 'self-signed.key'),
} as const;

/** How long a server may take to accept connections after it is started. */
const READY_TIMEOUT_MS = 10_000;

export interface RealServer {
  name: string;
  /** `http://127.0.0.1:PORT` (or `https://` with TLS). */
  url: string;
  port: number;
  /** The server's temporary folder: config, logs, pid file. */
  dir: string;
  child: ChildProcess;
  /** What the server printed on stdout and stderr, for failure messages. */
  output(): string;
  /** Reads a file of the server's folder (a log), or '' if it does not exist yet. */
  read(file: string): string;
  stop(): Promise<void>;
}

/** A server binary that is not installed. */
export class MissingServerError extends Error {
  override name = 'MissingServerError';
  constructor(binary: string, debianPackage: string) {
    super(`${binary} is not installed: run \`apt-get install ${debianPackage}\` (.ci/run installs it)`);
  }
}

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The absolute path of an executable, or a {@link MissingServerError} naming the package to install. */
export function requireBinary(binary: string, debianPackage: string): string {
  const dirs = binary.startsWith('/') ? [''] : [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH_PATH];
  for (const dir of dirs) {
    const candidate = dir ? join(dir, binary) : binary;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new MissingServerError(binary, debianPackage);
}

/** A loopback port free right now (servers that cannot listen on port 0 and report it are given one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{([A-Z]+)\}\}/g, (_, name: string) => values[name] ?? '');
}

function template(name: string): string {
  return readFileSync(join(FIXTURES, 'real-servers', name), 'utf8');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface Launch {
  name: string;
  command: string;
  args: string[];
  dir: string;
  port: number;
  scheme?: 'http' | 'https';
  env?: Record<string, string>;
}

/** Spawns a server and resolves once its port accepts connections; rejects with its output if it exits first. */
async function launch({ name, command, args, dir, port, scheme = 'http', env }: Launch): Promise<RealServer> {
  const child = spawn(command, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));
  const read = (file: string) => {
    try {
      return readFileSync(join(dir, file), 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(killer);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`${name} did not start (${spawnError?.message ?? `exit ${child.exitCode ?? child.signalCode}`}): ${output}`);
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not accept connections on port ${port} within ${READY_TIMEOUT_MS} ms: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { name, url: `${scheme}://127.0.0.1:${port}`, port, dir, child, output: () => output, read, stop };
}

/** Starts with a fresh free port, again on a port race (another process took the port between check and bind). */
async function withFreePort(start: (port: number) => Promise<RealServer>): Promise<RealServer> {
  for (let tries = 1; ; tries++) {
    try {
      return await start(await freePort());
    } catch (error) {
      if (tries >= 3 || !/address already in use|EADDRINUSE|Address in use|Connection in use/i.test(String(error))) throw error;
    }
  }
}

export interface NginxOptions {
  /** The document root (the test writes its files there). */
  root: string;
  /** Directives inside the `server { }` block: locations, add_header, return... */
  server?: string;
  /** TLS with the test certificate; `http2` adds HTTP/2 (ALPN h2) on the same port. */
  tls?: { http2?: boolean };
}

/**
 * Starts nginx (Debian `nginx-light` or `nginx`), one process as the current user.
 *
 * @example
 * const nginx = await startNginx({ root, server: 'location = /moved { return 302 /here; }' });
 * await fetch(`${nginx.url}/moved`);
 * await nginx.stop();
 */
export function startNginx(options: NginxOptions): Promise<RealServer> {
  const nginx = requireBinary('nginx', 'nginx-light');
  return withFreePort(async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-nginx-'));
    mkdirSync(join(dir, 'tmp'));
    // nginx before 1.25.1 takes http2 as a listen parameter; the `http2 on` directive came later.
    const tls = options.tls
      ? `    ssl_certificate ${TEST_CERT.cert};\n    ssl_certificate_key ${TEST_CERT.key};\n`
      : '';
    const listen = `127.0.0.1:${port}${options.tls ? ' ssl' : ''}${options.tls?.http2 ? ' http2' : ''}`;
    writeFileSync(
      join(dir, 'nginx.conf'),
      fill(template('nginx.conf'), { DIR: dir, ROOT: options.root, LISTEN: listen, TLS: tls, SERVER: options.server ?? '' }),
    );
    return launch({
      name: 'nginx',
      command: nginx,
      args: ['-p', `${dir}/`, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')],
      dir,
      port,
      scheme: options.tls ? 'https' : 'http',
    });
  });
}

/**
 * Starts nginx over TLS with HTTP/2 (ALPN h2) and the test certificate ({@link TEST_CERT}).
 *
 * @example
 * const h2 = await startNginxHttp2({ root });
 * // curl --http2 --cacert TEST_CERT.cert h2.url
 */
export function startNginxHttp2(options: Omit<NginxOptions, 'tls'>): Promise<RealServer> {
  return startNginx({ ...options, tls: { http2: true } });
}

export interface LighttpdOptions {
  root: string;
  /** Extra lighttpd directives (url.redirect, setenv, $HTTP conditionals...). */
  config?: string;
}

/**
 * Starts lighttpd (Debian `lighttpd`) in the foreground.
 *
 * @example
 * const lighttpd = await startLighttpd({ root });
 */
export function startLighttpd(options: LighttpdOptions): Promise<RealServer> {
  const lighttpd = requireBinary('lighttpd', 'lighttpd');
  return withFreePort(async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-lighttpd-'));
    mkdirSync(join(dir, 'deflate'));
    writeFileSync(
      join(dir, 'lighttpd.conf'),
      fill(template('lighttpd.conf'), { DIR: dir, ROOT: options.root, PORT: String(port), CONFIG: options.config ?? '' }),
    );
    return launch({ name: 'lighttpd', command: lighttpd, args: ['-D', '-f', join(dir, 'lighttpd.conf')], dir, port });
  });
}

/** Debian's Python, not whichever `python3` is first on PATH (that one may lack the Debian packages). */
const DEBIAN_PYTHON = '/usr/bin/python3';

/**
 * Starts python3-httpbin under gunicorn (threads, so /delay and /drip do not hold up the rest).
 *
 * @example
 * const httpbin = await startHttpbin();
 * await fetch(`${httpbin.url}/status/418`);
 */
export function startHttpbin(): Promise<RealServer> {
  const python = requireBinary(DEBIAN_PYTHON, 'python3');
  for (const [module, pkg] of [
    ['httpbin', 'python3-httpbin'],
    ['gunicorn', 'python3-gunicorn'],
  ] as const) {
    const probe = spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' });
    if (probe.status !== 0) throw new MissingServerError(`the Python module ${module}`, pkg);
  }
  return withFreePort(async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-httpbin-'));
    return launch({
      name: 'httpbin',
      command: python,
      args: [
        '-m', 'gunicorn', 'httpbin:app',
        '-b', `127.0.0.1:${port}`,
        '--worker-class', 'gthread', '--workers', '1', '--threads', '32', '--graceful-timeout', '1',
        '--worker-tmp-dir', dir,
        '--access-logfile', join(dir, 'access.log'),
        '--error-logfile', join(dir, 'error.log'),
      ],
      dir,
      port,
      env: { PYTHONDONTWRITEBYTECODE: '1' },
    });
  });
}

export interface TinyproxyOptions {
  /** Extra tinyproxy directives (Allow, ConnectPort, BasicAuth...). */
  config?: string;
}

/**
 * Starts tinyproxy (Debian `tinyproxy`) in the foreground. Its log (`server.read('tinyproxy.log')`)
 * has a line per request, so a test can see what went through the proxy.
 *
 * @example
 * const proxy = await startTinyproxy();
 * // fanout fetch list --proxy proxy.url ...
 * expect(proxy.read('tinyproxy.log')).toContain('GET http://127.0.0.1');
 */
export function startTinyproxy(options: TinyproxyOptions = {}): Promise<RealServer> {
  const tinyproxy = requireBinary('tinyproxy', 'tinyproxy');
  return withFreePort(async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'fanout-tinyproxy-'));
    writeFileSync(join(dir, 'tinyproxy.conf'), fill(template('tinyproxy.conf'), { DIR: dir, PORT: String(port), CONFIG: options.config ?? '' }));
    return launch({ name: 'tinyproxy', command: tinyproxy, args: ['-d', '-c', join(dir, 'tinyproxy.conf')], dir, port });
  });
}
