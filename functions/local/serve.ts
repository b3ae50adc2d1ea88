/**
 * `fanout serve`: the HTTP API, dashboard and workers on this machine. The same Hono app as on
 * Lambda, over the embedded runtime; jobs left unfinished by a previous run are resumed at start.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { createApp } from '../api/app.ts';
import type { UploadTarget } from '../api/deps.ts';
import { preloadBodyText } from '../core/engine/body-text-loader.ts';
import { checkHeaderEnv, closeHeaderEnvForServer } from '../core/header-env.ts';
import { proxyAuthForFromEnv } from '../core/engine/proxy.ts';
import type { AddressGuard } from '../core/engine/guard.ts';
import { UsageError } from '../core/errors.ts';
import { UPLOAD_DEFAULTS, sweepUploads } from '../core/uploads.ts';
import { EmbeddedRuntime } from './runtime.ts';
import { startSchedules, type ScheduleRunner } from './schedules.ts';

export interface ServeOptions {
  host: string;
  port: number;
  dataDir: string;
  workers: number;
  guard: AddressGuard;
  token?: string;
  schedulesFile?: string;
  callbackSecret?: string;
}

export interface RunningServer {
  url: string;
  runtime: EmbeddedRuntime;
  schedules: ScheduleRunner | undefined;
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Uploads come back to this server: PUT /uploads/ID. */
const localUploads: UploadTarget = {
  receivesPut: true,
  maxPending: UPLOAD_DEFAULTS.maxPending,
  async target(uploadId, requestUrl) {
    return {
      url: `${requestUrl.origin}/uploads/${uploadId}`,
      method: 'PUT',
      headers: { 'content-type': 'text/plain' },
      expiresAt: null, // the slot's own expiry (UPLOAD_DEFAULTS) is given by the route
    };
  },
};

/**
 * Starts the server; resolves once it listens.
 *
 * @throws {UsageError} when asked to listen beyond loopback without a token.
 */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  if (!LOOPBACK.test(options.host) && !options.token) {
    throw new UsageError(`refusing to listen on ${options.host} without a token: set FANOUT_TOKEN (or use --host 127.0.0.1)`);
  }
  // API users are not the operator: headerEnv names only what FANOUT_HEADER_ENV_VARS lists.
  closeHeaderEnvForServer();
  // Loaded now, not at the first inline body days later (a reinstall may have replaced its file).
  preloadBodyText((error) => console.error(JSON.stringify({ level: 'warn', message: 'loading the body decoders failed (tried again at the first inline body)', error: (error as Error).message })));
  const runtime = new EmbeddedRuntime({
    dataDir: options.dataDir,
    guard: options.guard,
    // A worker thread per worker: this thread serves the API and counts.
    threads: options.workers,
    // Jobs name their proxies: the credentials go only to the operator's.
    proxyAuthFor: proxyAuthForFromEnv(),
    callbackSecret: options.callbackSecret ?? options.token,
  });
  runtime.on('error', (error, context) =>
    console.error(JSON.stringify({ level: 'warn', message: context, error: (error as Error).message })),
  );
  let schedules: ScheduleRunner | undefined;
  const app = createApp({
    store: runtime.store,
    queue: runtime.queue,
    token: () => options.token,
    uploads: localUploads,
    cancel: (jobId) => runtime.cancel(jobId),
    // The workers are this process's threads: a headerEnv variable it lacks is refused at submission.
    checkOptions: (options) => checkHeaderEnv(options.headerEnv),
    schedules: () => (schedules ? { schedules: schedules.schedules, nextRuns: schedules.nextRuns() } : { schedules: [] }),
  });
  await runtime.recover();
  // Expired upload slots (and their lists) go at start and hourly: uploads must not fill the disk.
  const sweep = () =>
    sweepUploads(runtime.store).catch((error) => console.error(JSON.stringify({ level: 'warn', message: 'upload sweep failed', error: (error as Error).message })));
  await sweep();
  const sweeper = setInterval(sweep, UPLOAD_DEFAULTS.sweepEveryMs);
  sweeper.unref();
  runtime.start();
  schedules = options.schedulesFile ? await startSchedules(options.schedulesFile, runtime) : undefined;

  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: options.host, port: options.port }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    runtime,
    schedules,
    async close() {
      schedules?.stop();
      clearInterval(sweeper);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await runtime.stop();
    },
  };
}
