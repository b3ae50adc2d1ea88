/**
 * The EventBridge Scheduler target: each schedule's entry from schedules.json is the target's
 * input, so a run submits its list from the bucket like any job.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { z } from 'zod';
import { scheduleSchema, submitScheduledJob } from '../../core/schedules.ts';
import { awsLimits, awsRuntime } from '../environment.ts';

const logger = new Logger({ serviceName: 'fanout-schedule' });
const eventSchema = z.object({ schedule: scheduleSchema });

/**
 * The Lambda handler.
 *
 * @example
 * await handler({ schedule: { name: 'nightly', expression: 'rate(1 day)', list: 'lists/nightly.txt' } });
 */
export const handler = async (event: unknown): Promise<{ jobId: string; state: string }> => {
  const parsed = eventSchema.safeParse(event);
  if (!parsed.success) throw new Error(`not a fanout schedule event: ${parsed.error.issues[0]!.path.join('.')}: ${parsed.error.issues[0]!.message}`);
  const { schedule } = parsed.data;
  const rt = awsRuntime();
  // Planned for at most the budget, well inside this function's timeout; the workers plan the rest.
  const limits = awsLimits();
  const submitted = await submitScheduledJob(rt.store, rt.queue, schedule, limits.FANOUT_PLAN_IN_SLICES_ABOVE_BYTES, Date.now() + limits.FANOUT_API_BUDGET_MS);
  logger.info('scheduled job submitted', { schedule: schedule.name, jobId: submitted.jobId, state: submitted.state, total: submitted.total });
  return { jobId: submitted.jobId, state: submitted.state };
};
