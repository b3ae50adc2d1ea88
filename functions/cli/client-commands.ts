/**
 * `fanout submit|status|results|cancel|jobs`: clients of a running API, local or on AWS, or, for all
 * but `submit`, of the local data folder when no API is named.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { INPUT_FORMATS } from '../core/input.ts';
import { checkJobId } from '../core/layout.ts';
import { ERROR_CODES } from '../core/record.ts';
import { CHANGE_FILTERS } from '../core/results.ts';
import type { JobStatus } from '../core/status.ts';
import { clientConfig, FanoutClient } from './client.ts';
import { addJobFlags, jobOptionsFromFlags, wholeNumber } from './job-flags.ts';
import { dataDirOf } from './fetch-command.ts';
import { LocalJobs, type JobsBackend } from './local-jobs.ts';
import { createProgress, failureSummary, progressMode, waitSummary } from './progress.ts';
import { formatSummary } from './summary.ts';

interface ApiFlags {
  api?: string;
  token?: string;
}

/** Lists above this go through POST /uploads instead of one request. */
const UPLOAD_ABOVE_BYTES = 4 * 1024 * 1024; // = the AWS API's FANOUT_MAX_REQUEST_BYTES default (a Lambda request carries 6 MB, maybe base64)
/** Client defaults, stated once. */
export const CLIENT_DEFAULTS = {
  /** `status --watch` and `submit --wait` poll this often. */
  watchIntervalMs: 1_000,
  /** How long `cancel` waits for the job to end before reporting it as still cancelling. */
  cancelSettleMs: 5_000,
} as const;

/** States after which a job changes no more. */
const ENDED: readonly string[] = ['completed', 'cancelled', 'rejected'];

const CONTENT_TYPES: Record<string, string> = {
  text: 'text/plain',
  ndjson: 'application/x-ndjson',
  json: 'application/json',
  csv: 'text/csv',
};

function formatOf(file: string, flag: string | undefined): string {
  if (flag && flag !== 'auto') return flag;
  if (/\.(ndjson|jsonl)$/i.test(file)) return 'ndjson';
  if (/\.json$/i.test(file)) return 'json';
  if (/\.csv$/i.test(file)) return 'csv';
  return 'text';
}

function withUrlColumn(query: URLSearchParams, urlColumn: string | undefined): URLSearchParams {
  if (urlColumn !== undefined) query.set('urlColumn', urlColumn);
  return query;
}

/** Job options as query parameters (headers as repeated `header=name: value`, headerEnv as repeated `headerEnv=name=VARIABLE`). */
export function optionsQuery(options: Record<string, unknown>): URLSearchParams {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(options)) {
    if (name === 'headers') for (const [k, v] of Object.entries(value as Record<string, string>)) query.append('header', `${k}: ${v}`);
    else if (name === 'headerEnv') for (const [k, v] of Object.entries(value as Record<string, string>)) query.append('headerEnv', `${k}=${v}`);
    else query.set(name, String(value));
  }
  return query;
}

/**
 * Polls a job until it ends, drawing the same progress as `fanout fetch` (a bar on a terminal,
 * lines otherwise, nothing with `quiet`).
 *
 * @throws {UsageError} when the job is local and no process runs it (it would never end).
 * @example
 * const status = await watchJob(backendOf(flags), jobId);
 */
export async function watchJob(backend: JobsBackend, jobId: string, quiet = false): Promise<JobStatus> {
  let status = await backend.status(jobId);
  const progress = createProgress(status.total, progressMode({ quiet, tty: process.stderr.isTTY === true }), {
    doneBefore: status.done,
    failures: async () => failureSummary(status),
    wait: async () => waitSummary(status),
  });
  try {
    while (!ENDED.includes(status.state)) {
      if (backend.running?.(jobId) === false) {
        throw new UsageError(`job ${jobId} is not running: no fanout process uses ${backend.where}; finish it with: fanout resume ${jobId}`);
      }
      progress.update(status.done, status.failed);
      await new Promise((r) => setTimeout(r, CLIENT_DEFAULTS.watchIntervalMs));
      status = await backend.status(jobId);
    }
    progress.update(status.done, status.failed);
  } finally {
    progress.stop();
  }
  return status;
}

function printStatus(status: JobStatus): void {
  process.stdout.write(JSON.stringify(status, null, 2) + '\n');
}

interface ClientFlags extends ApiFlags {
  dataDir?: string;
}

/** Where the jobs are: the API given by --api or FANOUT_API, else the local data folder. */
export function backendOf(flags: ClientFlags): JobsBackend {
  if (flags.api || process.env.FANOUT_API) {
    const config = clientConfig(flags);
    return Object.assign(new FanoutClient(config), { where: config.api });
  }
  return new LocalJobs(dataDirOf(flags.dataDir));
}

/** Waits a little for a cancelled job to end, so `cancel` reports where it ended, not "running". */
async function settle(backend: JobsBackend, status: JobStatus): Promise<JobStatus> {
  const until = Date.now() + CLIENT_DEFAULTS.cancelSettleMs;
  while (!ENDED.includes(status.state) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    status = await backend.status(status.jobId);
  }
  return status;
}

/**
 * Refuses filters that can match nothing because they name no known value (a typo would
 * otherwise print nothing and exit 0).
 *
 * @throws {UsageError} naming the flag.
 */
export function checkFilters(filters: URLSearchParams): void {
  const ok = filters.get('ok');
  if (ok !== null && ok !== 'true' && ok !== 'false') throw new UsageError(`--ok: expected true or false, got ${JSON.stringify(ok)}`);
  const status = filters.get('status');
  if (status !== null && !/^[1-5]\d\d$/.test(status)) throw new UsageError(`--status: expected an HTTP status from 100 to 599, got ${JSON.stringify(status)}`);
  const error = filters.get('error');
  if (error !== null && !(ERROR_CODES as readonly string[]).includes(error)) {
    throw new UsageError(`--error: expected one of ${ERROR_CODES.join(', ')}, got ${JSON.stringify(error)}`);
  }
  const change = filters.get('change');
  if (change !== null && !(CHANGE_FILTERS as readonly string[]).includes(change)) {
    throw new UsageError(`--change: expected one of ${CHANGE_FILTERS.join(', ')}, got ${JSON.stringify(change)}`);
  }
}

/** --api and --token; with `local`, also --data-dir (used when no API is given). */
function apiOptions(command: Command, local = true): Command {
  command
    .option('--api <url>', local ? 'API base URL (default $FANOUT_API; without either, the local data folder)' : 'API base URL (default $FANOUT_API or http://127.0.0.1:8787)')
    .option('--token <token>', 'bearer token (default $FANOUT_TOKEN)');
  if (local) command.option('--data-dir <dir>', 'without an API: the data folder (default $FANOUT_DATA_DIR or ./fanout-data)');
  return command;
}

type Accepted = Awaited<ReturnType<FanoutClient['submit']>>;

/** Copies stdin to a temporary file, so its size is known before it is sent. */
async function spoolStdin(): Promise<{ path: string; remove: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'fanout-submit-'));
  const path = join(dir, 'list');
  await pipeline(process.stdin, createWriteStream(path));
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function clientCommands(program: Command, exit: (code: number) => void): void {
  const submit = apiOptions(
    program
      .command('submit')
      .description('submit a list to a running API; prints the job id')
      .argument('<file>', 'URL list (text, NDJSON or JSON); - for stdin')
      .option('--format <format>', `${INPUT_FORMATS.join(', ')} (default: by file extension, else text)`)
      .option('--url-column <name>', 'CSV: the column holding the URL (default url)')
      .option('--upload', 'send the list through POST /uploads (automatic above 4 MiB)')
      .option('--wait', 'watch the job until it ends, then print its final status as JSON')
      .option('--json', 'print the API answer as JSON instead of the job id'),
    false,
  );
  addJobFlags(submit);
  submit.action(async (file: string, flags: ApiFlags & Record<string, unknown>) => {
    const client = new FanoutClient(clientConfig(flags));
    const format = formatOf(file, flags.format as string | undefined);
    if (!(format in CONTENT_TYPES)) throw new UsageError(`--format: expected one of ${INPUT_FORMATS.join(', ')}`);
    const options = jobOptionsFromFlags(flags);
    // stdin is spooled to a file first: its size decides between one request and an upload, and an
    // upload is a PUT with a Content-Length (S3 refuses chunked PUTs to presigned URLs).
    const spooled = file === '-' ? await spoolStdin() : undefined;
    const path = spooled?.path ?? file;
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw new UsageError(`cannot read ${file}: no such file`);
    }
    let accepted: Accepted;
    try {
      accepted =
        size > UPLOAD_ABOVE_BYTES || flags.upload
          ? await client.submitUpload(createReadStream(path), size, format, options, flags.urlColumn as string | undefined)
          : await client.submit(createReadStream(path), CONTENT_TYPES[format]!, withUrlColumn(optionsQuery(options), flags.urlColumn as string | undefined));
    } finally {
      spooled?.remove();
    }
    const planned = accepted.total === null ? 'being planned by the workers' : `${accepted.total} URLs in ${accepted.chunks} chunks`;
    process.stderr.write(`fanout: job ${accepted.jobId}: ${planned}\n`);
    // stdout carries one thing: the final status with --wait, else the answer (--json) or the id.
    if (flags.wait) printStatus(await watchJob(Object.assign(client, { where: '' }), accepted.jobId, flags.quiet === true));
    else if (flags.json) process.stdout.write(JSON.stringify(accepted, null, 2) + '\n');
    else process.stdout.write(`${accepted.jobId}\n`);
    exit(0);
  });

  apiOptions(
    program
      .command('status')
      .description('status of a job as JSON')
      .argument('<job-id>')
      .option('--watch', 'follow the job until it ends (progress on stderr), then print the summary `fetch` prints')
      .option('--json', 'with --watch: print the final status as JSON instead of the summary')
      .option('-q, --quiet', 'with --watch: no progress on stderr'),
  ).action(async (jobId: string, flags: ClientFlags & { watch?: boolean; json?: boolean; quiet?: boolean }) => {
    checkJobId(jobId);
    const backend = backendOf(flags);
    if (!flags.watch) {
      const status = await backend.status(jobId);
      printStatus(status);
      if (!ENDED.includes(status.state) && backend.running?.(jobId) === false) {
        process.stderr.write(`fanout: no fanout process runs job ${jobId} now; finish it with: fanout resume ${jobId}\n`);
      }
      return exit(0);
    }
    const started = Date.now();
    const status = await watchJob(backend, jobId, flags.quiet === true);
    // The job's own time and rate, from its creation: the watch may have started at any point.
    const summary = formatSummary(status, {
      elapsedMs: status.finishedAt ? Date.parse(status.finishedAt) - Date.parse(status.createdAt) : Date.now() - started,
      ...(backend instanceof LocalJobs ? { dataDir: backend.where } : { resultsAt: `fanout results ${jobId} --api ${backend.where}` }),
    });
    if (flags.json) {
      process.stderr.write(summary);
      printStatus(status);
    } else process.stdout.write(summary);
    exit(0);
  });

  apiOptions(
    program
      .command('results')
      .description('every record of a job as NDJSON, in input order')
      .argument('<job-id>')
      .option('--out <file>', 'write to a file instead of stdout')
      .option('--ok <bool>', 'only records with ok true or false')
      .option('--status <code>', 'only records with this HTTP status')
      .option('--error <code>', 'only records with this error code')
      .option('--change <what>', `with a baseline: only ${CHANGE_FILTERS.join(', ')} records`),
  ).action(async (jobId: string, flags: ClientFlags & { out?: string; ok?: string; status?: string; error?: string; change?: string }) => {
    checkJobId(jobId);
    const backend = backendOf(flags);
    const filters = new URLSearchParams();
    for (const name of ['ok', 'status', 'error', 'change'] as const) if (flags[name] !== undefined) filters.set(name, flags[name]!);
    checkFilters(filters);
    const body = await backend.results(jobId, filters);
    await pipeline(body, flags.out ? createWriteStream(flags.out) : process.stdout, { end: Boolean(flags.out) });
    exit(0);
  });

  apiOptions(
    program
      .command('cancel')
      .description('cancel a job: URLs not yet fetched get "cancelled" records and the job ends')
      .argument('<job-id>')
      .option('--json', 'print the status after cancelling as JSON'),
  ).action(async (jobId: string, flags: ClientFlags & { json?: boolean }) => {
    checkJobId(jobId);
    const backend = backendOf(flags);
    const status = await settle(backend, await backend.cancel(jobId));
    // The cancel landed as the last chunk was written: nothing was cancelled, and saying so is the truth
    // (the API answers 409 with the same words; exit 2 either way).
    if (status.state === 'completed') {
      throw new UsageError(`job ${jobId} already ended (completed): every URL had been fetched before the cancel arrived, nothing was cancelled`);
    }
    if (flags.json) printStatus(status);
    else if (ENDED.includes(status.state)) {
      process.stdout.write(`fanout: job ${jobId} ${status.state}: ${status.succeeded} ok, ${status.failed} failed, ${status.byError.cancelled ?? 0} cancelled of ${status.total}\n`);
    } else {
      process.stdout.write(`fanout: job ${jobId} cancelling: ${status.done}/${status.total} records so far; the rest get "cancelled" records as its workers stop\n`);
    }
    exit(0);
  });

  apiOptions(
    program
      .command('jobs')
      .description('jobs, newest first')
      .option('--limit <n>', 'how many', '20')
      .option('--json', 'as JSON'),
  ).action(async (flags: ClientFlags & { limit: string; json?: boolean }) => {
    const backend = backendOf(flags);
    const page = await backend.jobs(wholeNumber('--limit', flags.limit, 1, 1000));
    if (!flags.json && page.jobs.length === 0) process.stderr.write(`fanout: no jobs in ${backend.where}\n`);
    if (flags.json) process.stdout.write(JSON.stringify(page, null, 2) + '\n');
    else {
      // A local job nobody runs is not "running": it waits for `fanout resume`.
      const idle = backend.running?.('') === false;
      let stopped = 0;
      for (const j of page.jobs) {
        const state = idle && !ENDED.includes(j.state) ? (stopped++, 'stopped') : j.state;
        process.stdout.write(`${j.jobId}  ${state.padEnd(9)}  ${`${j.done}/${j.total}`.padStart(15)}  failed ${j.failed}  ${j.createdAt}  ${j.source ?? ''}\n`);
      }
      if (stopped > 0) process.stderr.write(`fanout: ${stopped} stopped job(s): finish one with fanout resume JOB, or end it with fanout cancel JOB\n`);
    }
    exit(0);
  });
}
