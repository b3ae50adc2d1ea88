/**
 * `fanout serve`: the HTTP API, dashboard, workers and schedules on this machine.
 */
import type { Command } from 'commander';
import { AddressGuard } from '../core/engine/guard.ts';
import { startServer } from '../local/serve.ts';
import { dataDirOf } from './fetch-command.ts';
import { wholeNumber, workersOf } from './job-flags.ts';

interface ServeFlags {
  host: string;
  port: string;
  dataDir?: string;
  workers?: string;
  schedules?: string;
  allowPrivate?: boolean;
}

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('run the HTTP API, dashboard, workers and schedules on this machine')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port (0 picks a free one)', '8787')
    .option('--data-dir <dir>', 'where jobs are kept (default $FANOUT_DATA_DIR or ./fanout-data)')
    .option('--workers <n>', 'worker threads, each with its own connection pools and concurrency (default: the core count)')
    .option('--schedules <file>', 'schedules file to run (default $FANOUT_SCHEDULES)')
    .option('--allow-private', 'let jobs reach private, loopback and link-local addresses (or FANOUT_ALLOW_PRIVATE=1)')
    .action(async (flags: ServeFlags) => {
      const env = flags.allowPrivate ? { ...process.env, FANOUT_ALLOW_PRIVATE: '1' } : process.env;
      const server = await startServer({
        host: flags.host,
        port: wholeNumber('--port', flags.port, 0, 65535),
        dataDir: dataDirOf(flags.dataDir),
        workers: workersOf(flags.workers),
        guard: AddressGuard.fromEnv(env, true),
        token: process.env.FANOUT_TOKEN || undefined,
        schedulesFile: flags.schedules || process.env.FANOUT_SCHEDULES || undefined,
        callbackSecret: process.env.FANOUT_CALLBACK_SECRET || undefined,
      });
      const auth = process.env.FANOUT_TOKEN ? 'bearer token required' : 'no token (loopback only)';
      process.stdout.write(`fanout serve: listening on ${server.url} (${auth}); dashboard ${server.url}/ , API docs ${server.url}/docs\n`);
      if (server.schedules) {
        for (const [name, next] of Object.entries(server.schedules.nextRuns())) process.stdout.write(`  schedule ${name}: next run ${next ?? 'disabled'}\n`);
      }
      const stop = async () => {
        process.stdout.write('fanout serve: stopping\n');
        await server.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await new Promise(() => {}); // serve until stopped
    });
}
