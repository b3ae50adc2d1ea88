/**
 * The `Job Finished` event: when a job ends, the worker puts its status (with the change counts of a
 * job with a baseline) on an EventBridge bus, so users route it to e-mail, Slack or anything else
 * with an EventBridge rule, e.g. `{"source": ["fanout"], "detail-type": ["Job Finished"],
 * "detail": {"schedule": ["nightly"], "changes": {"newlyFailing": [{"numeric": [">", 0]}]}}}`.
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { JobStatus } from '../core/status.ts';
import type { AwsEnv } from './environment.ts';

/** The event's names, stated once (rules match on them). */
export const JOB_EVENT = {
  source: 'fanout',
  detailType: 'Job Finished',
} as const;

let client: EventBridgeClient | undefined;

/**
 * The event's detail: the status without its list of result files (O(chunks), and an event holds at
 * most 256 KB); `results.manifest` names the manifest, which lists them.
 *
 * @example
 * eventDetail(status).results // { manifest: 'jobs/.../manifest.json' }
 */
export function eventDetail(status: JobStatus): Omit<JobStatus, 'results'> & { results: { manifest: string | null } } {
  return { ...status, results: { manifest: status.results.manifest } };
}

/**
 * A publisher for finished jobs, or undefined when FANOUT_EVENT_BUS is unset. A failed entry throws,
 * so the finishing message is retried (the event is put before the manifest: at least once).
 *
 * @example
 * const publish = jobEventPublisher(rt.env); // FinishDeps.publish
 */
export function jobEventPublisher(env: Pick<AwsEnv, 'FANOUT_EVENT_BUS'>): ((status: JobStatus) => Promise<void>) | undefined {
  const bus = env.FANOUT_EVENT_BUS;
  if (!bus) return undefined;
  return async (status) => {
    client ??= new EventBridgeClient({});
    const out = await client.send(
      new PutEventsCommand({
        Entries: [{ Source: JOB_EVENT.source, DetailType: JOB_EVENT.detailType, Detail: JSON.stringify(eventDetail(status)), EventBusName: bus }],
      }),
    );
    if (out.FailedEntryCount) {
      const entry = out.Entries?.[0];
      throw new Error(`EventBridge refused the Job Finished event of ${status.jobId}: ${entry?.ErrorCode ?? ''} ${entry?.ErrorMessage ?? ''}`.trim());
    }
  };
}
