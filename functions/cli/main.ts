/**
 * The `fanout` command line. Exit codes: 0 the job completed (whatever each URL's outcome),
 * 1 the run failed, 2 bad input or usage (with the same message the API would give).
 */
import { Command, CommanderError } from 'commander';
import { FanoutError, OptionsError } from '../core/errors.ts';
import { VERSION } from '../core/version.ts';
import { clientCommands } from './client-commands.ts';
import { fetchCommand } from './fetch-command.ts';
import { serveCommand } from './serve-command.ts';
import { flagError } from './job-flags.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

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
    .showHelpAfterError('(run fanout help for usage)');
  const exit = (code: number) => (exitCode = code);
  fetchCommand(program, exit);
  serveCommand(program);
  clientCommands(program, exit);
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    const { code, message } = exitFor(error);
    if (message) process.stderr.write(message + '\n');
    return code;
  }
}
