/**
 * Runs a schedules file on this machine with croner (cron expressions) and timers (rates): each
 * firing submits the schedule's list as a job, as EventBridge Scheduler does on AWS.
 */
import { readFile } from 'node:fs/promises';
import { Cron } from 'croner';
import type { Submitted } from '../core/plan-slices.ts';
import { parseExpression, parseSchedules, submitScheduledJob, type Schedule } from '../core/schedules.ts';
import type { EmbeddedRuntime } from './runtime.ts';

export interface ScheduleRunner {
  schedules: Schedule[];
  /** When each schedule fires next (null for a disabled one). */
  nextRuns(): Record<string, string | null>;
  /** Fires a schedule now, as its timer would. */
  fire(name: string): Promise<Submitted>;
  stop(): void;
}

/**
 * Loads a schedules file and starts its timers.
 *
 * @throws {OptionsError} when the file is invalid (nothing is started then).
 */
export async function startSchedules(file: string, runtime: EmbeddedRuntime): Promise<ScheduleRunner> {
  const schedules = parseSchedules(await readFile(file, 'utf8'));
  const fire = async (schedule: Schedule) => submitScheduledJob(runtime.store, runtime.queue, schedule);
  const run = (schedule: Schedule) =>
    fire(schedule).then(
      (job) => console.error(JSON.stringify({ level: 'info', message: 'scheduled job submitted', schedule: schedule.name, jobId: job.jobId })),
      (error) => runtime.emit('error', error, `schedule ${schedule.name}`),
    );

  const crons = new Map<string, Cron>();
  const timers = new Map<string, { timer: NodeJS.Timeout; next: number; ms: number }>();
  for (const schedule of schedules.filter((s) => s.enabled)) {
    const parsed = parseExpression(schedule.expression)!;
    if (parsed.kind === 'cron') {
      crons.set(schedule.name, new Cron(parsed.pattern, { timezone: schedule.timezone, protect: true }, () => void run(schedule)));
    } else {
      const entry = {
        ms: parsed.ms,
        next: Date.now() + parsed.ms,
        timer: setInterval(() => {
          entry.next = Date.now() + parsed.ms;
          void run(schedule);
        }, parsed.ms),
      };
      entry.timer.unref();
      timers.set(schedule.name, entry);
    }
  }

  return {
    schedules,
    nextRuns() {
      const out: Record<string, string | null> = {};
      for (const s of schedules) {
        const next = crons.get(s.name)?.nextRun() ?? (timers.has(s.name) ? new Date(timers.get(s.name)!.next) : null);
        out[s.name] = next ? next.toISOString() : null;
      }
      return out;
    },
    fire(name) {
      const schedule = schedules.find((s) => s.name === name);
      if (!schedule) throw new Error(`no schedule ${name}`);
      return fire(schedule);
    },
    stop() {
      for (const cron of crons.values()) cron.stop();
      for (const { timer } of timers.values()) clearInterval(timer);
    },
  };
}
