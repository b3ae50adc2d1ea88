/**
 * Schedules: one file format (schedules.json) read by `fanout serve` and by the CDK stack, which
 * turns each entry into an EventBridge Scheduler schedule. Expressions use EventBridge's syntax,
 * `cron(m h dom mon dow year)` or `rate(n unit)`, so the same file means the same thing in both.
 *
 * ```json
 * { "schedules": [
 *   { "name": "nightly", "expression": "cron(0 3 * * ? *)", "timezone": "UTC",
 *     "list": "lists/nightly.txt", "options": { "concurrency": 32 } } ] }
 * ```
 * `list` is a key in the store: under the data folder locally, in the bucket on AWS.
 */
import { z } from 'zod';
import { OptionsError } from './errors.ts';
import { INPUT_FORMATS } from './input.ts';
import { parseJobOptions } from './options.ts';
import { submitStoredList, type Submitted } from './plan-slices.ts';
import { submitStoredListWithinBudget } from './plan-budget.ts';
import type { ObjectStore, Queue } from './ports.ts';
import { NotFoundError } from './errors.ts';
import { Cron } from 'croner';
import { ALERT_ON } from './job.ts';
import { lastCompletedRun, listRuns, recordRunStarted, type RunEntry } from './runs.ts';

const KEY = /^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(\/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$/;

export const scheduleSchema = z
  .object({
    /** EventBridge Scheduler names: letters, digits, - _ . (1-64). */
    name: z.string().regex(/^[A-Za-z0-9_.\-]{1,64}$/, 'letters, digits, "-", "_" and "." only, at most 64'),
    expression: z.string().refine((e) => parseExpression(e) !== undefined, 'expected cron(m h dom mon dow year) or rate(n minutes|hours|days)'),
    timezone: z.string().default('UTC'),
    list: z.string().regex(KEY, 'a store key such as "lists/urls.txt"'),
    format: z.enum(INPUT_FORMATS).default('auto'),
    /** With format csv: the column holding the URL (default url). */
    urlColumn: z.string().min(1).max(1024).optional(),
    options: z.record(z.string(), z.unknown()).default({}),
    enabled: z.boolean().default(true),
    /** Send the callback and the event only when the run has such records (default: always). */
    alertOn: z.array(z.enum(ALERT_ON)).default([]),
  })
  .strict();

export const schedulesFileSchema = z.object({ schedules: z.array(scheduleSchema) }).strict();

export type Schedule = z.output<typeof scheduleSchema>;

export type ParsedExpression = { kind: 'rate'; ms: number } | { kind: 'cron'; pattern: string };

const RATE_UNITS: Record<string, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** AWS numbers weekdays 1 (SUN) to 7 (SAT); cron (and croner) 0 to 6. */
function convertWeekdays(field: string): string {
  return field
    .split(',')
    .map((part) => part.replace(/^(\d)(?:-(\d))?/, (_m, a: string, b?: string) => `${Number(a) - 1}${b ? `-${Number(b) - 1}` : ''}`))
    .join(',');
}

/**
 * Parses an EventBridge expression into a rate or a 5-field cron pattern for croner.
 *
 * @returns undefined when the expression is not one fanout can run locally.
 * @example
 * parseExpression('cron(0 3 ? * 2-6 *)') // { kind: 'cron', pattern: '0 3 ? * 1-5' }
 */
export function parseExpression(expression: string): ParsedExpression | undefined {
  const rate = /^rate\(\s*(\d+)\s+(minute|hour|day)s?\s*\)$/.exec(expression.trim());
  if (rate) {
    const n = Number(rate[1]);
    return n > 0 ? { kind: 'rate', ms: n * RATE_UNITS[rate[2]!]! } : undefined;
  }
  const cron = /^cron\((.*)\)$/.exec(expression.trim());
  if (!cron) return undefined;
  const fields = cron[1]!.trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const [minute, hour, dom, month, dow, year] = fields as [string, string, string, string, string, string];
  if (year !== '*') return undefined; // a year restriction cannot be run by a 5-field cron
  if (dom !== '?' && dow !== '?') return undefined; // EventBridge requires one of them to be "?"
  if (!/^[\d*?,/#LW\-A-Za-z]+$/.test(fields.join(''))) return undefined;
  return { kind: 'cron', pattern: [minute, hour, dom, month, dow === '?' ? '?' : convertWeekdays(dow)].join(' ') };
}

/**
 * Reads and validates a schedules file's text, options included.
 *
 * @throws {OptionsError} naming the schedule and field.
 */
export function parseSchedules(text: string): Schedule[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new OptionsError(`schedules file is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = schedulesFileSchema.safeParse(json);
  if (!parsed.success) throw OptionsError.fromZod(parsed.error, 'schedules field');
  const names = new Set<string>();
  for (const schedule of parsed.data.schedules) {
    if (names.has(schedule.name)) throw new OptionsError(`schedule "${schedule.name}" is defined twice`, 'name');
    names.add(schedule.name);
    try {
      parseJobOptions(schedule.options);
    } catch (error) {
      throw new OptionsError(`schedule "${schedule.name}": ${(error as Error).message}`, 'options');
    }
  }
  return parsed.data.schedules;
}

/**
 * Submits one run of a schedule: the list is read from the store and planned like any job (in
 * slices by the workers when it is larger than `planInSlicesAboveBytes`; with a `deadline`, the
 * rest of a smaller one is handed to the workers when planning it outlasts the deadline).
 *
 * @throws {NotFoundError} when the list is not in the store.
 */
export async function submitScheduledJob(store: ObjectStore, queue: Queue, schedule: Schedule, planInSlicesAboveBytes?: number, deadline?: number): Promise<Submitted> {
  // A run compares with the schedule's last completed run unless its options name a baseline.
  const options = { ...schedule.options };
  if (options.since === undefined) {
    const last = await lastCompletedRun(store, schedule.name);
    if (last) options.since = last.jobId;
  }
  let submitted: Submitted;
  try {
    const submission = {
      list: schedule.list,
      format: schedule.format,
      urlColumn: schedule.urlColumn,
      options,
      source: `schedule:${schedule.name}`,
      schedule: { name: schedule.name, alertOn: schedule.alertOn },
      planInSlicesAboveBytes,
    };
    submitted = await (deadline === undefined ? submitStoredList(store, queue, submission) : submitStoredListWithinBudget(store, queue, { ...submission, deadline }));
  } catch (error) {
    if (error instanceof NotFoundError) throw new NotFoundError(`schedule "${schedule.name}": no list at ${schedule.list}`);
    throw error;
  }
  await recordRunStarted(store, schedule.name, { ...submitted, since: (options.since as string | undefined) ?? null });
  return submitted;
}

/** A schedule as GET /schedules lists it. */
export interface ScheduleInfo {
  name: string;
  expression: string;
  timezone: string;
  list: string;
  enabled: boolean;
  alertOn: string[];
  /** When it fires next (ISO), null when disabled or unknown. */
  nextRun: string | null;
  /** Its newest run, null before the first. */
  lastRun: RunEntry | null;
}

/**
 * When a schedule fires next, from its expression: croner for cron expressions; a rate counts from
 * its last run (EventBridge counts from the schedule's creation, which fanout does not know).
 *
 * @example
 * nextRunOf(schedule, new Date()) // '2026-11-27T03:00:00.000Z'
 */
export function nextRunOf(schedule: Schedule, lastRunAt: string | null, now = new Date()): string | null {
  if (!schedule.enabled) return null;
  const parsed = parseExpression(schedule.expression);
  if (!parsed) return null;
  if (parsed.kind === 'cron') return new Cron(parsed.pattern, { timezone: schedule.timezone, paused: true }).nextRun(now)?.toISOString() ?? null;
  if (!lastRunAt) return null;
  let next = Date.parse(lastRunAt) + parsed.ms;
  if (next < now.getTime()) next += Math.ceil((now.getTime() - next) / parsed.ms) * parsed.ms;
  return new Date(next).toISOString();
}

/**
 * The schedules with their next and last run: one LIST page and one GET per schedule.
 *
 * @param nextRuns the runner's own timers, when it has them (`fanout serve`).
 * @example
 * await describeSchedules(store, parseSchedules(text))
 */
export async function describeSchedules(store: ObjectStore, schedules: Schedule[], nextRuns?: Record<string, string | null>): Promise<ScheduleInfo[]> {
  return Promise.all(
    schedules.map(async (s) => {
      const lastRun = (await listRuns(store, s.name, { limit: 1 })).runs[0] ?? null;
      return {
        name: s.name,
        expression: s.expression,
        timezone: s.timezone,
        list: s.list,
        enabled: s.enabled,
        alertOn: s.alertOn,
        nextRun: nextRuns && s.name in nextRuns ? nextRuns[s.name]! : nextRunOf(s, lastRun?.createdAt ?? null),
        lastRun,
      };
    }),
  );
}
