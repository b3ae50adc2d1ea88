/**
 * `fanout submit|status|results|cancel|jobs`: clients of a running API, local or on AWS.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { INPUT_FORMATS } from '../core/input.ts';
import { checkJobId } from '../core/layout.ts';
import type { JobStatus } from '../core/status.ts';
import { clientConfig, FanoutClient } from './client.ts';
import { addJobFlags, jobOptionsFromFlags } from './job-flags.ts';
import { createProgress } from './progress.ts';

interface ApiFlags {
  api?: string;
  token?: string;
}

/** Lists above this go through POST /uploads instead of one request. */
const UPLOAD_ABOVE_BYTES = 4 * 1024 * 1024; // = the AWS API's FANOUT_MAX_REQUEST_BYTES default (a Lambda request carries 6 MB, maybe base64)
const WATCH_INTERVAL_MS = 1_000;

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

/** Job options as query parameters (headers as repeated `header=name: value`). */
export function optionsQuery(options: Record<string, unknown>): URLSearchParams {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(options)) {
    if (name === 'headers') for (const [k, v] of Object.entries(value as Record<string, string>)) query.append('header', `${k}: ${v}`);
    else query.set(name, String(value));
  }
  return query;
}

/**
 * Polls a job until it ends, drawing the same progress bar as `fanout fetch` on a terminal.
 */
export async function watchJob(client: FanoutClient, jobId: string, showProgress: boolean): Promise<JobStatus> {
  let status = await client.status(jobId);
  const progress = createProgress(status.total, showProgress);
  try {
    while (status.state === 'queued' || status.state === 'running') {
      progress.update(status.done, status.failed);
      await new Promise((r) => setTimeout(r, WATCH_INTERVAL_MS));
      status = await client.status(jobId);
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

function apiOptions(command: Command): Command {
  return command
    .option('--api <url>', 'API base URL (default $FANOUT_API or http://127.0.0.1:8787)')
    .option('--token <token>', 'bearer token (default $FANOUT_TOKEN)');
}

export function clientCommands(program: Command, exit: (code: number) => void): void {
  const submit = apiOptions(
    program
      .command('submit')
      .description('submit a list to a running API; prints the job id')
      .argument('<file>', 'URL list (text, NDJSON or JSON); - for stdin')
      .option('--format <format>', `${INPUT_FORMATS.join(', ')} (default: by file extension, else text)`)
      .option('--url-column <name>', 'CSV: the column holding the URL (default url)')
      .option('--upload', 'send the list through POST /uploads (automatic above 8 MiB)')
      .option('--wait', 'watch the job until it ends, then print its final status as JSON')
      .option('--json', 'print the API answer as JSON instead of the job id'),
  );
  addJobFlags(submit);
  submit.action(async (file: string, flags: ApiFlags & Record<string, unknown>) => {
    const client = new FanoutClient(clientConfig(flags));
    const format = formatOf(file, flags.format as string | undefined);
    if (!(format in CONTENT_TYPES)) throw new UsageError(`--format: expected one of ${INPUT_FORMATS.join(', ')}`);
    const options = jobOptionsFromFlags(flags);
    let size = 0;
    if (file !== '-') {
      try {
        size = (await stat(file)).size;
      } catch {
        throw new UsageError(`cannot read ${file}: no such file`);
      }
    }
    const source = file === '-' ? process.stdin : createReadStream(file);
    const accepted =
      size > UPLOAD_ABOVE_BYTES || flags.upload
        ? await client.submitUpload(source, format, options, flags.urlColumn as string | undefined)
        : await client.submit(source, CONTENT_TYPES[format]!, withUrlColumn(optionsQuery(options), flags.urlColumn as string | undefined));
    process.stderr.write(`fanout: job ${accepted.jobId}: ${accepted.total} URLs in ${accepted.chunks} chunks\n`);
    // stdout carries one thing: the final status with --wait, else the answer (--json) or the id.
    if (flags.wait) printStatus(await watchJob(client, accepted.jobId, process.stderr.isTTY === true));
    else if (flags.json) process.stdout.write(JSON.stringify(accepted, null, 2) + '\n');
    else process.stdout.write(`${accepted.jobId}\n`);
    exit(0);
  });

  apiOptions(
    program
      .command('status')
      .description('status of a job as JSON')
      .argument('<job-id>')
      .option('--watch', 'follow the job with a progress bar until it ends'),
  ).action(async (jobId: string, flags: ApiFlags & { watch?: boolean }) => {
    checkJobId(jobId);
    const client = new FanoutClient(clientConfig(flags));
    printStatus(flags.watch ? await watchJob(client, jobId, process.stderr.isTTY === true) : await client.status(jobId));
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
      .option('--error <code>', 'only records with this error code'),
  ).action(async (jobId: string, flags: ApiFlags & { out?: string; ok?: string; status?: string; error?: string }) => {
    checkJobId(jobId);
    const client = new FanoutClient(clientConfig(flags));
    const filters = new URLSearchParams();
    for (const name of ['ok', 'status', 'error'] as const) if (flags[name] !== undefined) filters.set(name, flags[name]!);
    const body = await client.results(jobId, filters);
    await pipeline(body, flags.out ? createWriteStream(flags.out) : process.stdout, { end: Boolean(flags.out) });
    exit(0);
  });

  apiOptions(program.command('cancel').description('cancel a job').argument('<job-id>')).action(async (jobId: string, flags: ApiFlags) => {
    checkJobId(jobId);
    printStatus(await new FanoutClient(clientConfig(flags)).cancel(jobId));
    exit(0);
  });

  apiOptions(
    program
      .command('jobs')
      .description('jobs, newest first')
      .option('--limit <n>', 'how many', '20')
      .option('--json', 'as JSON'),
  ).action(async (flags: ApiFlags & { limit: string; json?: boolean }) => {
    const page = await new FanoutClient(clientConfig(flags)).jobs(Number(flags.limit));
    if (flags.json) process.stdout.write(JSON.stringify(page, null, 2) + '\n');
    else {
      for (const j of page.jobs) {
        process.stdout.write(`${j.jobId}  ${j.state.padEnd(9)}  ${`${j.done}/${j.total}`.padStart(15)}  failed ${j.failed}  ${j.createdAt}  ${j.source ?? ''}\n`);
      }
    }
    exit(0);
  });
}
