/**
 * `fanout serve`: the HTTP API, dashboard, workers and schedules on this machine.
 */
import type { Command } from 'commander';
import { AddressGuard } from '../core/engine/guard.ts';
import { headerEnvForServer } from '../core/header-env.ts';
import { readLocalEnv } from '../local/environment.ts';
import { lockDataDir } from '../local/lock.ts';
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
      const local = readLocalEnv();
      const env = flags.allowPrivate ? { ...process.env, FANOUT_ALLOW_PRIVATE: '1' } : process.env;
      const port = wholeNumber('--port', flags.port, 0, 65535);
      const dataDir = dataDirOf(flags.dataDir);
      // One process runs a folder's jobs: a second serve or fetch would fetch the same chunks twice.
      const lock = lockDataDir(dataDir, 'fanout serve');
      // Loaded here: the HTTP API and the dashboard are not needed by the other commands.
      const { startServer } = await import('../local/serve.ts');
      const server = await startServer({
        host: flags.host,
        port,
        dataDir,
        workers: workersOf(flags.workers),
        guard: AddressGuard.fromEnv(env, true),
        token: local.token,
        schedulesFile: flags.schedules || local.schedulesFile,
        callbackSecret: local.callbackSecret,
      }).catch((error: unknown) => {
        lock.release();
        throw error;
      });
      const auth = local.token ? 'bearer token required' : 'no token (loopback only)';
      const headerEnv = headerEnvForServer();
      process.stdout.write(
        `fanout serve: listening on ${server.url} (${auth}); dashboard ${server.url}/ , API docs ${server.url}/docs\n` +
          `  address guard: ${server.runtime.fetcher.guard.describe()}\n` +
          `  header values from the environment (headerEnv): ${headerEnv.summary}\n`,
      );
      for (const warning of headerEnv.warnings) process.stderr.write(`fanout serve: warning: ${warning}\n`);
      if (server.schedules) {
        for (const [name, next] of Object.entries(server.schedules.nextRuns())) process.stdout.write(`  schedule ${name}: next run ${next ?? 'disabled'}\n`);
      }
      // The first signal stops gracefully (chunks in hand are finished and written); a second one
      // stops at once: chunks not written are fetched again when serve next starts.
      let stopping = false;
      const stop = async (signal: NodeJS.Signals) => {
        if (stopping) {
          process.stdout.write('fanout serve: stopped at once; unfinished chunks run again at the next start\n');
          process.exit(signal === 'SIGINT' ? 130 : 143); // the lock goes with the process (lock.ts)
        }
        stopping = true;
        process.stdout.write(`fanout serve: stopping after the chunks in hand (${signal} again to stop at once)\n`);
        await server.close();
        lock.release();
        process.exit(0);
      };
      process.on('SIGINT', (signal) => void stop(signal));
      process.on('SIGTERM', (signal) => void stop(signal));
      await new Promise(() => {}); // serve until stopped
    });
}
