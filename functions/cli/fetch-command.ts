/**
 * `fanout fetch FILE|-`: one job on the embedded runtime, from a file or stdin, with a progress bar,
 * a summary, and optionally every record written out in input order.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { AddressGuard } from '../core/engine/guard.ts';
import { proxyRoutesFromEnv } from '../core/engine/proxy.ts';
import { UsageError } from '../core/errors.ts';
import { INPUT_FORMATS, openInput, type InputFormat } from '../core/input.ts';
import { readResults } from '../core/results.ts';
import { jobStatus } from '../core/status.ts';
import { checkJobId } from '../core/layout.ts';
import { EmbeddedRuntime } from '../local/runtime.ts';
import { threadBundle } from '../local/threads.ts';
import { addJobFlags, jobOptionsFromFlags, workersOf } from './job-flags.ts';
import { createProgress } from './progress.ts';
import { formatSummary } from './summary.ts';

export interface FetchFlags extends Record<string, unknown> {
  workers?: string;
  out?: string;
  json?: boolean;
  dataDir?: string;
  format?: string;
  blockPrivate?: boolean;
  progress?: boolean;
}

/** The data folder: --data-dir, else FANOUT_DATA_DIR, else ./fanout-data. */
export function dataDirOf(flag: string | undefined): string {
  return flag || process.env.FANOUT_DATA_DIR || './fanout-data';
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

function openRuntime(flags: FetchFlags): { runtime: EmbeddedRuntime; dataDir: string; workers: number } {
  const dataDir = dataDirOf(flags.dataDir);
  // The user is the operator here: private addresses are reachable unless --block-private.
  const guard = AddressGuard.fromEnv(process.env, flags.blockPrivate === true);
  const workers = workersOf(flags.workers);
  // The user's own environment: HTTP_PROXY / HTTPS_PROXY / NO_PROXY apply here (not in `serve`).
  const runtime = new EmbeddedRuntime({ dataDir, guard, envProxy: proxyRoutesFromEnv(process.env) });
  // The worker threads' code is bundled while the input is read and planned.
  void threadBundle().catch(() => {});
  runtime.on('error', (error, context) => process.stderr.write(`fanout: warning: ${context}: ${(error as Error).message}\n`));
  return { runtime, dataDir, workers };
}

/**
 * Runs the command. Resolves to the exit code: 0 when the job completed (whatever each URL's
 * outcome), 130 when interrupted (records of unfetched URLs say `cancelled`).
 */
export async function runFetch(file: string, flags: FetchFlags): Promise<number> {
  const format = (flags.format ?? 'auto') as InputFormat;
  if (!INPUT_FORMATS.includes(format)) throw new UsageError(`--format: expected one of ${INPUT_FORMATS.join(', ')}`);
  const { runtime, dataDir, workers } = openRuntime(flags);
  const started = Date.now();
  const input = await openInput(await openSource(file), format);
  const job = await runtime.submit(input, jobOptionsFromFlags(flags), file === '-' ? 'stdin' : file);
  startWorkers(runtime, workers, job.chunks);
  return runToEnd(runtime, job.jobId, flags, dataDir, started);
}

/** `fanout resume JOB`: re-enqueues what a killed run left unfinished and runs it to the end. */
export async function runResume(jobId: string, flags: FetchFlags): Promise<number> {
  checkJobId(jobId);
  const { runtime, dataDir, workers } = openRuntime(flags);
  const started = Date.now();
  await runtime.resume(jobId);
  startWorkers(runtime, workers, runtime.queue.size);
  return runToEnd(runtime, jobId, flags, dataDir, started);
}

/**
 * Workers run as worker threads (one per core by default), so a job uses every core and this thread
 * only plans, counts and draws. A job of a single chunk is fetched here, without starting a thread.
 */
function startWorkers(runtime: EmbeddedRuntime, workers: number, chunks: number): void {
  runtime.start(chunks > 1 ? Math.min(workers, chunks) : 0);
}

/** Draws progress, handles Ctrl-C, then prints the summary and writes --out/--json. */
async function runToEnd(runtime: EmbeddedRuntime, jobId: string, flags: FetchFlags, dataDir: string, started: number): Promise<number> {
  const before = await jobStatus(runtime.store, jobId);
  const showProgress = flags.progress !== false && process.stderr.isTTY === true && !flags.json;
  const progress = createProgress(before.total, showProgress);
  let done = before.done;
  let failed = before.failed;
  runtime.on('progress', (progressJobId, records, failures) => {
    if (progressJobId !== jobId) return;
    done += records;
    failed += failures;
    progress.update(done, failed);
  });

  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C: leave now
    interrupted = true;
    process.stderr.write('\nfanout: cancelling; unfetched URLs get "cancelled" records (Ctrl-C again to quit at once)\n');
    void runtime.cancel(jobId);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await runtime.waitForJob(jobId);
  } finally {
    progress.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await runtime.stop();
  }

  const status = await jobStatus(runtime.store, jobId);
  const stdoutBusy = flags.json === true || flags.out === '-';
  const summaryStream = stdoutBusy ? process.stderr : process.stdout;
  if (flags.out !== undefined) {
    const target = flags.out === '-' ? process.stdout : createWriteStream(flags.out);
    await pipeline(Readable.from(readResults(runtime.store, jobId)), target, { end: flags.out !== '-' });
  }
  summaryStream.write(formatSummary(status, Date.now() - started, dataDir));
  if (flags.out !== undefined && flags.out !== '-') summaryStream.write(`  records: ${flags.out} (${status.done})\n`);
  if (flags.json) process.stdout.write(JSON.stringify(status, null, 2) + '\n');
  return interrupted ? 130 : 0;
}

/** Registers `fanout fetch`. */
export function fetchCommand(program: Command, exit: (code: number) => void): void {
  const command = program
    .command('fetch')
    .description('fetch every URL of FILE (or - for stdin) on this machine; one record per URL')
    .argument('<file>', 'URL list: text (one URL per line), NDJSON, or JSON {"urls": [...]}; - for stdin')
    .option('--out <file>', 'write every record, in input order, as NDJSON (- for stdout)')
    .option('--json', 'print the final status as JSON on stdout')
    .option('--data-dir <dir>', 'where jobs are kept (default $FANOUT_DATA_DIR or ./fanout-data)')
    .option('--format <format>', `input format: ${INPUT_FORMATS.join(', ')} (default auto)`)
    .option('--block-private', 'refuse private, loopback and link-local addresses (FANOUT_ALLOW_CIDRS opens some)')
    .option('--workers <n>', 'worker threads, each with its own connections and concurrency (default: the core count)')
    .option('--no-progress', 'no progress bar');
  addJobFlags(command);
  command.action(async (file: string, flags: FetchFlags) => exit(await runFetch(file, flags)));

  program
    .command('resume')
    .description('finish a job that an interrupted or killed `fanout fetch` left unfinished')
    .argument('<job-id>', 'the job id (a folder under DATA_DIR/jobs/)')
    .option('--out <file>', 'write every record, in input order, as NDJSON (- for stdout)')
    .option('--json', 'print the final status as JSON on stdout')
    .option('--data-dir <dir>', 'where jobs are kept (default $FANOUT_DATA_DIR or ./fanout-data)')
    .option('--block-private', 'refuse private, loopback and link-local addresses')
    .option('--workers <n>', 'worker threads (default: the core count)')
    .option('--no-progress', 'no progress bar')
    .action(async (jobId: string, flags: FetchFlags) => exit(await runResume(jobId, flags)));
}
