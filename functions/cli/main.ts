/**
 * The `fanout` command line. Exit codes: 0 the job completed (whatever each URL's outcome),
 * 1 the run failed, 2 bad input or usage (with the same message the API would give).
 */
import { Command, CommanderError } from 'commander';
import { FanoutError, OptionsError } from '../core/errors.ts';
import { VERSION } from '../core/version.ts';
import { clientCommands } from './client-commands.ts';
import { scheduleCommands } from './schedule-commands.ts';
import { fetchCommand } from './fetch-command.ts';
import { serveCommand } from './serve-command.ts';
import { flagError } from './job-flags.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130, terminated: 143 } as const;

/** The end of `fanout help`: what the exit codes and environment variables mean. */
export const HELP_AFTER = `
Exit codes:
  0    the job completed (whatever each URL's outcome), or the command did its work
  1    the run failed (an internal error, an unreachable API)
  2    bad input or usage: the message names the line, flag or field (nothing is created)
  130  interrupted by Ctrl-C (SIGINT); 143 stopped by SIGTERM: the job stays resumable

Environment variables:
  FANOUT_DATA_DIR         data folder when --data-dir is not given (default ./fanout-data)
  FANOUT_API              API base URL for submit, status, results, cancel, jobs, schedules, runs
                          (without it and --api, those commands read the local data folder)
  FANOUT_TOKEN            bearer token: the one \`serve\` requires, the one clients send
  FANOUT_ALLOW_PRIVATE    1: jobs of \`serve\` may reach private and loopback addresses
  FANOUT_ALLOW_CIDRS      ranges allowed despite the address guard, e.g. 10.1.0.0/16,127.0.0.2/32
  FANOUT_SCHEDULES        schedules file \`serve\` runs (as --schedules)
  FANOUT_CALLBACK_SECRET  key that signs completion callbacks (default: FANOUT_TOKEN)
  FANOUT_HEADER_ENV_VARS  the only variables jobs of \`serve\` may name in headerEnv (none when unset),
                          comma-separated; FANOUT_* and AWS_* never
  FANOUT_PROXY_AUTH       user:password the workers send to proxies
  FANOUT_PROXY_AUTH_FOR   the proxies \`serve\` sends it to, comma-separated URLs (others get none)
  FANOUT_DEBUG            1: print stack traces with errors
`;

/** Message and exit code for anything a command threw. */
export function exitFor(error: unknown): { code: number; message?: string } {
  // The reader went away (`fanout results ... | head -1`): what it read was all it wanted.
  if ((error as NodeJS.ErrnoException)?.code === 'EPIPE') return { code: EXIT.ok };
  if (error instanceof CommanderError) {
    // commander has printed its own message already
    const quiet = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code);
    return { code: quiet ? EXIT.ok : EXIT.usage };
  }
  if (error instanceof OptionsError) return { code: EXIT.usage, message: `fanout: ${flagError(error).message}` };
  if (error instanceof FanoutError) {
    return { code: error.status < 500 ? EXIT.usage : EXIT.failed, message: `fanout: ${error.message}` };
  }
  const detail = process.env.FANOUT_DEBUG ? (error as Error)?.stack : (error as Error)?.message;
  return { code: EXIT.failed, message: `fanout: error: ${detail ?? String(error)}` };
}

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = new Command('fanout')
    .description('fetch ten or ten million URLs; exactly one result record per URL')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(run fanout help for usage)')
    .addHelpText('after', HELP_AFTER);
  const exit = (code: number) => (exitCode = code);
  fetchCommand(program, exit);
  serveCommand(program);
  clientCommands(program, exit);
  scheduleCommands(program, exit);
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    const { code, message } = exitFor(error);
    if (message) process.stderr.write(message + '\n');
    return code;
  }
}
