/**
 * The `fanout` command line. Exit codes: 0 the job completed (whatever each URL's outcome),
 * 1 the run failed, 2 bad input or usage (with the same message the API would give).
 */
import { Command, CommanderError } from 'commander';
import { FanoutError, OptionsError } from '../core/errors.ts';
import { VERSION } from '../core/version.ts';
import { fetchCommand } from './fetch-command.ts';
import { flagError } from './job-flags.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Message and exit code for anything a command threw. */
export function exitFor(error: unknown): { code: number; message?: string } {
  if (error instanceof CommanderError) {
    // commander has printed its own message already
    const quiet = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code);
    return { code: quiet ? EXIT.ok : EXIT.usage };
  }
  if (error instanceof OptionsError) return { code: EXIT.usage, message: `fanout: ${flagError(error).message}` };
  if (error instanceof FanoutError && error.status < 500) return { code: EXIT.usage, message: `fanout: ${error.message}` };
  return { code: EXIT.failed, message: `fanout: error: ${(error as Error)?.stack ?? String(error)}` };
}

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = new Command('fanout')
    .description('fetch ten or ten million URLs; exactly one result record per URL')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(run fanout help for usage)');
  fetchCommand(program, (code) => (exitCode = code));
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    const { code, message } = exitFor(error);
    if (message) process.stderr.write(message + '\n');
    return code;
  }
}
