/**
 * `fanout schedules` and `fanout runs NAME`: a schedule's runs with their state, counts, duration and
 * change counts, from a running API (`--api`, FANOUT_API) or, without one, from the local data folder
 * (the schedules file then comes from --schedules or FANOUT_SCHEDULES).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { checkScheduleName } from '../core/layout.ts';
import { listRuns, RUNS_DEFAULTS, type RunEntry, type RunsPage } from '../core/runs.ts';
import { describeSchedules, parseSchedules, type ScheduleInfo } from '../core/schedules.ts';
import { LocalStore } from '../local/local-store.ts';
import { clientConfig, FanoutClient } from './client.ts';
import { dataDirOf } from './fetch-command.ts';
import { wholeNumber } from './job-flags.ts';

interface Flags {
  api?: string;
  token?: string;
  dataDir?: string;
  schedules?: string;
  json?: boolean;
}

const useApi = (flags: Flags) => Boolean(flags.api || process.env.FANOUT_API);

/** "3 new, 1 changed, 2 newly failing" (zeros left out); "" without a baseline. */
export function changeText(run: Pick<RunEntry, 'changes'>): string {
  if (!run.changes) return '';
  const { new: added, changed, newlyFailing, recovered } = run.changes;
  const parts = [
    added && `${added} new`,
    changed && `${changed} changed`,
    newlyFailing && `${newlyFailing} newly failing`,
    recovered && `${recovered} recovered`,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'no change';
}

/**
 * One line per run: job, state, ok/total, duration, changes.
 *
 * @example
 * runLine(run) // '0190...  completed  98/100 ok  12.3 s  2 changed, 1 newly failing'
 */
export function runLine(run: RunEntry): string {
  const duration = run.durationMs === null ? '-' : `${(run.durationMs / 1000).toFixed(1)} s`;
  return `${run.jobId}  ${run.state.padEnd(9)}  ${`${run.succeeded}/${run.total ?? '?'} ok`.padStart(15)}  ${duration.padStart(9)}  ${run.createdAt}  ${changeText(run)}`.trimEnd();
}

async function localSchedules(flags: Flags): Promise<ScheduleInfo[]> {
  const file = flags.schedules || process.env.FANOUT_SCHEDULES;
  if (!file) throw new UsageError('no schedules file: give --schedules FILE (or set FANOUT_SCHEDULES), or --api for a running API');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UsageError(`cannot read ${file}`);
  }
  return describeSchedules(new LocalStore(dataDirOf(flags.dataDir)), parseSchedules(text));
}

function clientOf(flags: Flags) {
  return new FanoutClient(clientConfig(flags));
}

function addSource(command: Command): Command {
  return command
    .option('--api <url>', 'API base URL (default $FANOUT_API; without either, the local data folder)')
    .option('--token <token>', 'bearer token (default $FANOUT_TOKEN)')
    .option('--data-dir <dir>', 'without an API: the data folder (default $FANOUT_DATA_DIR or ./fanout-data)')
    .option('--json', 'as JSON');
}

export function scheduleCommands(program: Command, exit: (code: number) => void): void {
  addSource(program.command('schedules').description('the schedules, with their next and last run'))
    .option('--schedules <file>', 'without an API: the schedules file (default $FANOUT_SCHEDULES)')
    .action(async (flags: Flags) => {
      const schedules = useApi(flags) ? (await clientOf(flags).schedules()).schedules : await localSchedules(flags);
      if (flags.json) process.stdout.write(JSON.stringify({ schedules }, null, 2) + '\n');
      else {
        if (schedules.length === 0) process.stderr.write('fanout: no schedules\n');
        for (const s of schedules) {
          const last = s.lastRun ? `last ${s.lastRun.state} ${s.lastRun.createdAt} ${changeText(s.lastRun)}`.trimEnd() : 'never run';
          process.stdout.write(`${s.name.padEnd(20)}  ${s.expression.padEnd(22)}  next ${s.nextRun ?? (s.enabled ? '-' : 'disabled')}  ${last}\n`);
        }
      }
      exit(0);
    });

  addSource(program.command('runs').description("a schedule's runs, newest first: state, ok/total, duration, changes").argument('<name>', 'schedule name'))
    .option('--limit <n>', 'how many', String(RUNS_DEFAULTS.pageSize))
    .option('--cursor <cursor>', 'the next page (printed on stderr after a full page)')
    .action(async (name: string, flags: Flags & { limit: string; cursor?: string }) => {
      checkScheduleName(name);
      const limit = wholeNumber('--limit', flags.limit, 1, RUNS_DEFAULTS.maxPageSize);
      const page: RunsPage = useApi(flags)
        ? await clientOf(flags).runs(name, limit, flags.cursor)
        : await listRuns(new LocalStore(dataDirOf(flags.dataDir)), name, { limit, cursor: flags.cursor });
      if (flags.json) process.stdout.write(JSON.stringify(page, null, 2) + '\n');
      else {
        if (page.runs.length === 0) process.stderr.write(`fanout: no runs of schedule ${name}\n`);
        for (const run of page.runs) process.stdout.write(runLine(run) + '\n');
        if (page.next) process.stderr.write(`fanout: older runs: fanout runs ${name} --cursor ${page.next}\n`);
      }
      exit(0);
    });
}
