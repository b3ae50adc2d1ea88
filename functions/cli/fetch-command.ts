/**
 * `fanout fetch FILE|-`: one job on the embedded runtime, from a file or stdin, with a progress bar,
 * a summary, and optionally every record written out in input order.
 */
import { localCallbackSecret, readLocalEnv } from '../local/environment.ts';
import { constants, createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { AddressGuard } from '../core/engine/guard.ts';
import { proxyAuthForFromEnv, proxyRoutesFromEnv } from '../core/engine/proxy.ts';
import { UsageError } from '../core/errors.ts';
import { ENV_VAR_NAME, closeHeaderEnvForServer, refusedVariable } from '../core/header-env.ts';
import { INPUT_FORMATS, openInput, type InputFormat } from '../core/input.ts';
import { jobStatus } from '../core/status.ts';
import { checkJobId } from '../core/layout.ts';
import { EmbeddedRuntime } from '../local/runtime.ts';
import { lockDataDir } from '../local/lock.ts';
import { isApiSource, loadJob } from '../core/job.ts';
import { LocalStore } from '../local/local-store.ts';
import { addJobFlags, jobOptionsFromFlags, workersOf } from './job-flags.ts';
import { createProgress, failureSummary, progressMode, waitSummary, type Progress } from './progress.ts';
import { OutFile } from './out-file.ts';
import { outFormatOf } from './out-csv.ts';
import { formatSummary } from './summary.ts';

export interface FetchFlags extends Record<string, unknown> {
  workers?: string;
  out?: string;
  json?: boolean;
  dataDir?: string;
  format?: string;
  urlColumn?: string;
  outFormat?: string;
  blockPrivate?: boolean;
  progress?: boolean;
  quiet?: boolean;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The data folder: --data-dir, else FANOUT_DATA_DIR, else ./fanout-data. */
export function dataDirOf(flag: string | undefined): string {
  return flag || readLocalEnv().dataDir;
}

async function openSource(file: string): Promise<Readable> {
  if (file === '-') return process.stdin;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new UsageError(`${file} is not a file`);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  return createReadStream(file);
}

/** A word a shell reads back as itself (the resume line is meant to be pasted). */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Exit codes of an interrupted run: 128 + the signal's number, as shells report them. */
export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;
/** How long an interrupt waits for --out to take the chunks written so far (a second signal exits at once). */
const OUT_FLUSH_ON_SIGNAL_MS = 1_000;

interface Run {
  runtime: EmbeddedRuntime;
  dataDir: string;
  workers: number;
  progress: Progress;
  /** Set once the job exists: the interrupt message names it. */
  jobId?: string;
  /** Set once the job has ended: an interrupt then has nothing to resume. */
  ended?: boolean;
  /** --out, written as chunks complete. */
  out?: OutFile;
  release(): void;
}

/**
 * Locks the data folder and opens the runtime. Ctrl-C or SIGTERM from here on stops the run at
 * once: requests in flight are dropped with the process, chunks not finished are not written, and
 * every record already written stays, so `fanout resume JOB` carries on. Only `fanout cancel`
 * writes `cancelled` records.
 */
function openRun(flags: FetchFlags, command: string, apiJob = false): Run {
  const dataDir = dataDirOf(flags.dataDir);
  const workers = workersOf(flags.workers);
  const lock = lockDataDir(dataDir, command);
  // A job an API user submitted to `serve`, resumed here, keeps serve's rules (the address guard, no
  // proxies from this environment, proxy credentials and headerEnv variables only where the operator
  // allows them), or its options could reach what serve never let them. Otherwise the user is the
  // operator: private addresses are reachable unless --block-private, and HTTP_PROXY / HTTPS_PROXY /
  // NO_PROXY apply (not in `serve`).
  if (apiJob) closeHeaderEnvForServer();
  const rules = apiJob
    ? { guard: AddressGuard.fromEnv(process.env, true), proxyAuthFor: proxyAuthForFromEnv() }
    : { guard: AddressGuard.fromEnv(process.env, flags.blockPrivate === true), envProxy: proxyRoutesFromEnv(process.env) };
  const runtime = new EmbeddedRuntime({ dataDir, callbackSecret: localCallbackSecret(), ...rules });
  const run: Run = { runtime, dataDir, workers, progress: createProgress(0, 'off'), release: () => {} };
  runtime.on('error', (error, context) => run.progress.log(`fanout: warning: ${context}: ${(error as Error).message}`));
  const onSignal = (signal: keyof typeof SIGNAL_EXIT) => {
    run.progress.stop();
    const dirFlag = flags.dataDir ? ` --data-dir ${shellWord(flags.dataDir)}` : '';
    process.stderr.write(
      run.ended
        ? `\nfanout: interrupted; job ${run.jobId} had ended already\n`
        : run.jobId
          ? `\nfanout: interrupted; resume with: fanout resume ${run.jobId}${dirFlag}\n`
          : '\nfanout: interrupted before the job was created; nothing to resume\n',
    );
    // --out gets every chunk written so far (it follows them with a delay), for a second at most.
    const flushed = run.out && !run.ended ? run.out.finish().catch(() => {}) : Promise.resolve();
    void Promise.race([flushed, new Promise((r) => setTimeout(r, OUT_FLUSH_ON_SIGNAL_MS))]).then(() => process.exit(SIGNAL_EXIT[signal])); // the lock goes with the process (lock.ts)
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  run.release = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    lock.release();
  };
  return run;
}

/**
 * Runs the command. Resolves to the exit code: 0 when the job completed (whatever each URL's
 * outcome); an interrupt exits the process with 130 (SIGINT) or 143 (SIGTERM), the job resumable.
 */
export async function runFetch(file: string, flags: FetchFlags): Promise<number> {
  const format = inputFormatOf(file, flags.format);
  if (flags.urlColumn !== undefined && format !== 'csv') throw new UsageError('--url-column applies to CSV input: a .csv file, or --format csv');
  if (flags.out !== undefined) {
    outFormatOf(flags.out, flags.outFormat); // a bad --out-format fails before the job
    await checkOutPath(flags.out, file);
  }
  const options = jobOptionsFromFlags(flags);
  checkHeaderEnvFlags(options.headerEnv as Record<string, string> | undefined);
  const source = await openSource(file);
  const run = openRun(flags, 'fanout fetch');
  try {
    const started = Date.now();
    const input = await openInput(source, format, { urlColumn: flags.urlColumn });
    const job = await run.runtime.submit(input, options, fetchSource(file));
    run.jobId = job.jobId;
    if (!flags.quiet) process.stderr.write(`fanout: job ${job.jobId}: ${plural(job.total, 'URL')} in ${plural(job.chunks, 'chunk')}\n`);
    startWorkers(run.runtime, run.workers, job.chunks);
    return await runToEnd(run, job.jobId, flags, started);
  } finally {
    run.release();
  }
}

/**
 * job.json's `source` of a `fanout fetch`: the list's path (`stdin` for -). A path that reads as a
 * source serve writes (`api`, `upload:ID`) gets `./` in front, so a resume never takes the
 * operator's own job for an API user's (see isApiSource).
 */
function fetchSource(file: string): string {
  if (file === '-') return 'stdin';
  return isApiSource(file) ? `./${file}` : file;
}

/** Refuses an --out that cannot be written, or that is the input itself, before any job is made. */
async function checkOutPath(out: string, input: string): Promise<void> {
  if (out === '-') return;
  if (input !== '-' && resolve(out) === resolve(input)) throw new UsageError(`--out ${out} is the input list itself: it would be overwritten`);
  const folder = dirname(resolve(out));
  try {
    if (!(await stat(folder)).isDirectory()) throw new UsageError(`--out ${out}: ${folder} is not a folder`);
    await access(folder, constants.W_OK);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--out ${out}: cannot write in ${folder} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/**
 * The input format: `--format` when given, else CSV for a `.csv` file (the only case where CSV is
 * safe to assume), else sniffed from the first line.
 *
 * @example
 * inputFormatOf('list.csv', undefined) // 'csv'
 */
export function inputFormatOf(file: string, flag: string | undefined): InputFormat {
  const format = (flag ?? (file !== '-' && /\.csv$/i.test(file) ? 'csv' : 'auto')) as InputFormat;
  if (!INPUT_FORMATS.includes(format)) throw new UsageError(`--format: expected one of ${INPUT_FORMATS.join(', ')}`);
  return format;
}

/** `--out` as the flags say: NDJSON, or CSV for a .csv file or --out-format csv. */
function outFile(store: EmbeddedRuntime['store'], jobId: string, chunks: number, flags: FetchFlags & { out: string }): OutFile {
  return new OutFile(store, jobId, chunks, flags.out, undefined, outFormatOf(flags.out, flags.outFormat));
}

/** `--header-env NAME=VAR` whose variable is not set: exit 2 naming it (never its value), before anything is created. */
function checkHeaderEnvFlags(headerEnv: Record<string, string> | undefined): void {
  for (const [name, variable] of Object.entries(headerEnv ?? {})) {
    if (!ENV_VAR_NAME.test(variable)) {
      throw new UsageError(`--header-env ${name}=${variable}: ${JSON.stringify(variable)} is not an environment variable name (letters, digits and _, not starting with a digit)`);
    }
    const refused = refusedVariable(variable);
    if (refused) throw new UsageError(`--header-env ${name}=${variable}: environment variable ${variable} cannot be used: ${refused}`);
    if (!process.env[variable]) throw new UsageError(`--header-env ${name}=${variable}: environment variable ${variable} is not set`);
  }
}

/** `fanout resume JOB`: re-enqueues what an interrupted or killed run left unfinished and runs it to the end. */
export async function runResume(jobId: string, flags: FetchFlags): Promise<number> {
  checkJobId(jobId);
  const { source } = await loadJob(new LocalStore(dataDirOf(flags.dataDir)), jobId);
  const run = openRun(flags, 'fanout resume', isApiSource(source));
  try {
    const started = Date.now();
    run.jobId = jobId;
    const before = await jobStatus(run.runtime.store, jobId);
    if (before.finishedAt !== null) {
      run.ended = true;
      process.stderr.write(`fanout: job ${jobId} had already ended (${before.state}); nothing to resume\n`);
      return await report(run, jobId, flags, Date.parse(before.finishedAt) - Date.parse(before.createdAt), 0);
    }
    // The worker threads read headerEnv from this process: a variable missing now would fail every record left.
    checkHeaderEnvFlags((await loadJob(run.runtime.store, jobId)).options.headerEnv);
    await run.runtime.resume(jobId);
    const chunks = run.runtime.queue.size;
    if (!flags.quiet) {
      process.stderr.write(`fanout: resuming job ${jobId}: ${before.done}/${before.total} URLs done, ${plural(chunks, 'chunk')} to fetch\n`);
    }
    startWorkers(run.runtime, run.workers, chunks);
    return await runToEnd(run, jobId, flags, started, before.done);
  } finally {
    run.release();
  }
}

/**
 * Workers run as worker threads (one per core by default), so a job uses every core and this thread
 * only plans, counts and draws. One worker (`--workers 1`, or the default on one core) and a job of a
 * single chunk fetch here: a thread of its own would only take turns with this one for the same CPU,
 * and it costs its start-up, its own heap and a message per queue call (7% of a one-core
 * 40,000-URL run, 57 MiB; docs/performance.md).
 */
function startWorkers(runtime: EmbeddedRuntime, workers: number, chunks: number): void {
  runtime.start(chunks > 1 && workers > 1 ? Math.min(workers, chunks) : 0);
}

/** Draws progress until the job ends, then prints the summary and writes --out/--json. */
async function runToEnd(run: Run, jobId: string, flags: FetchFlags, started: number, doneBefore = 0): Promise<number> {
  const { runtime } = run;
  const before = await jobStatus(runtime.store, jobId);
  if (flags.out !== undefined) run.out = outFile(runtime.store, jobId, before.chunks.total, { ...flags, out: flags.out });
  const mode = flags.progress === false ? 'off' : progressMode({ quiet: flags.quiet, tty: process.stderr.isTTY === true });
  run.progress = createProgress(before.total, mode, {
    doneBefore,
    failures: async () => failureSummary(await jobStatus(runtime.store, jobId)),
    wait: async () => waitSummary(await jobStatus(runtime.store, jobId)),
  });
  let done = before.done;
  let failed = before.failed;
  runtime.on('progress', (progressJobId, records, failures) => {
    if (progressJobId !== jobId) return;
    done += records;
    failed += failures;
    run.progress.update(done, failed);
  });
  try {
    await runtime.waitForJob(jobId);
    run.ended = true;
  } finally {
    run.progress.stop();
    await runtime.stop();
  }
  return report(run, jobId, flags, Date.now() - started, doneBefore);
}

/** The summary, --out and --json of a job that has ended. */
async function report(run: Run, jobId: string, flags: FetchFlags, elapsedMs: number, doneBefore: number): Promise<number> {
  const { runtime, dataDir } = run;
  const status = await jobStatus(runtime.store, jobId);
  const stdoutBusy = flags.json === true || flags.out === '-';
  const summaryStream = stdoutBusy ? process.stderr : process.stdout;
  if (flags.out !== undefined) {
    run.out ??= outFile(runtime.store, jobId, status.chunks.total, { ...flags, out: flags.out });
    await run.out.finish();
  }
  const job = await loadJob(runtime.store, jobId);
  // --quiet silences stderr: a summary that would go there (with --json or --out -) is left out.
  if (!(flags.quiet && summaryStream === process.stderr)) {
    summaryStream.write(formatSummary(status, { elapsedMs, dataDir, doneBefore, perHost: job.options.perHost }));
    if (flags.out !== undefined && flags.out !== '-') summaryStream.write(`  records: ${flags.out} (${status.done})\n`);
  }
  if (flags.json) process.stdout.write(JSON.stringify(status, null, 2) + '\n');
  return 0;
}

/** Registers `fanout fetch`. */
export function fetchCommand(program: Command, exit: (code: number) => void): void {
  const command = program
    .command('fetch')
    .description('fetch every URL of FILE (or - for stdin) on this machine; one record per URL')
    .argument('<file>', 'URL list: text (one URL per line), NDJSON, JSON {"urls": [...]} or CSV (a .csv file); - for stdin')
    .option('--out <file>', 'write every record, in input order, as NDJSON (- for stdout) or as CSV to a .csv file; grows as chunks complete')
    .option('--out-format <format>', 'ndjson | csv (default: csv for a .csv file, else ndjson)')
    .option('--url-column <name>', 'CSV input: the column holding the URL (default url)')
    .option('--json', 'print the final status as JSON on stdout')
    .option('--data-dir <dir>', 'where jobs are kept (default $FANOUT_DATA_DIR or ./fanout-data)')
    .option('--format <format>', `input format: ${INPUT_FORMATS.join(', ')} (default auto)`)
    .option('--block-private', 'refuse private, loopback and link-local addresses (FANOUT_ALLOW_CIDRS opens some)')
    .option('--workers <n>', 'worker threads, each with its own connections and concurrency; 1 fetches in the main thread (default: the core count)')
    .option('--no-progress', 'no progress bar or progress lines (the job line and summary stay)')
    .option('-q, --quiet', 'print nothing on stderr but errors: no job line, no progress');
  addJobFlags(command);
  command.action(async (file: string, flags: FetchFlags) => exit(await runFetch(file, flags)));

  program
    .command('resume')
    .description('finish a job that an interrupted or killed `fanout fetch` left unfinished')
    .argument('<job-id>', 'the job id (a folder under DATA_DIR/jobs/)')
    .option('--out <file>', 'write every record, in input order, as NDJSON (- for stdout) or as CSV to a .csv file; grows as chunks complete')
    .option('--out-format <format>', 'ndjson | csv (default: csv for a .csv file, else ndjson)')
    .option('--json', 'print the final status as JSON on stdout')
    .option('--data-dir <dir>', 'where jobs are kept (default $FANOUT_DATA_DIR or ./fanout-data)')
    .option('--block-private', 'refuse private, loopback and link-local addresses')
    .option('--workers <n>', 'worker threads; 1 fetches in the main thread (default: the core count)')
    .option('--no-progress', 'no progress bar or progress lines (the job line and summary stay)')
    .option('-q, --quiet', 'print nothing on stderr but errors: no job line, no progress')
    .action(async (jobId: string, flags: FetchFlags) => exit(await runResume(jobId, flags)));
}
