/**
 * The worker function: an SQS event handler over the shared worker. Powertools' batch processor
 * turns each failed record into a `batchItemFailures` entry (partial batch response), so only
 * those messages come back. Chunk messages may run out of time and hand on a continuation; plan
 * messages plan large lists in slices; records from the dead-letter queue still get their
 * `chunk_failed` records, so no URL vanishes there.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { sendCallback } from '../../core/callback.ts';
import { Fetcher } from '../../core/engine/fetcher.ts';
import { AddressGuard } from '../../core/engine/guard.ts';
import { loadJob } from '../../core/job.ts';
import { planSlice } from '../../core/plan-slices.ts';
import { layout } from '../../core/layout.ts';
import { parseChunkMessage, processChunk, writeFailedChunk, type WorkerDeps } from '../../core/worker.ts';
import { awsRuntime, type AwsRuntime } from '../environment.ts';

const logger = new Logger({ serviceName: 'fanout-worker' });
const processor = new BatchProcessor(EventType.SQS);
let fetcher: Fetcher | undefined;

function deps(rt: AwsRuntime): WorkerDeps {
  // One Agent per container, kept warm across invocations. Server mode: private addresses are
  // blocked unless FANOUT_ALLOW_PRIVATE / FANOUT_ALLOW_CIDRS open them.
  fetcher ??= new Fetcher(AddressGuard.fromEnv(process.env, true));
  const f = fetcher;
  return {
    store: rt.store,
    fetcher: f,
    onJobFinished: async (manifest) => {
      logger.info('job finished', { jobId: manifest.jobId, state: manifest.state, total: manifest.total, failed: manifest.failed });
      const delivery = await sendCallback(rt.store, f, manifest.jobId, rt.env.FANOUT_CALLBACK_SECRET ?? rt.env.FANOUT_TOKEN);
      if (delivery) logger.info('callback sent', { jobId: manifest.jobId, ok: delivery.ok, status: delivery.status, error: delivery.error?.code });
    },
  };
}

/** One SQS record: a chunk, a plan slice, or a dead letter. Throws to have the message retried. */
export async function handleRecord(record: SQSRecord, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<void> {
  const rt = awsRuntime();
  const body = JSON.parse(record.body) as { type?: string; jobId?: string };
  logger.appendKeys({ jobId: body.jobId, messageId: record.messageId });
  const deadline = Date.now() + context.getRemainingTimeInMillis();
  const receiveCount = Number(record.attributes.ApproximateReceiveCount ?? '1');

  if (rt.env.FANOUT_DLQ_ARN && record.eventSourceARN === rt.env.FANOUT_DLQ_ARN) {
    if (body.type === 'plan') {
      await rt.store.put(layout.rejected(body.jobId!), JSON.stringify({ message: 'planning failed on every delivery' }), { ifAbsent: true });
      logger.error('plan message dead-lettered');
      return;
    }
    const { jobId, chunk } = parseChunkMessage(record.body);
    const outcome = await writeFailedChunk(deps(rt), await loadJob(rt.store, jobId), chunk, `chunk ${chunk} failed on all ${rt.env.FANOUT_MAX_RECEIVE_COUNT} deliveries`);
    logger.error('chunk dead-lettered', { chunk, outcome: outcome.outcome });
    return;
  }

  if (body.type === 'plan') {
    const outcome = await planSlice(rt.store, rt.queue, record.body, { deadline });
    if (outcome.kind === 'continued') await rt.queue.send([outcome.message]);
    logger.info('plan slice', { outcome: outcome.kind, ...(outcome.kind === 'planned' ? { total: outcome.job.total, chunks: outcome.job.chunks } : {}) });
    return;
  }

  const finalReceive = receiveCount >= rt.env.FANOUT_MAX_RECEIVE_COUNT;
  const started = Date.now();
  const result = await processChunk(deps(rt), record.body, { finalReceive, deadline });
  if (result.continuation) await rt.queue.send([result.continuation]);
  logger.info('chunk processed', {
    chunk: result.chunk,
    outcome: result.outcome,
    records: result.counts.count,
    failed: result.counts.failed,
    ms: Date.now() - started,
    receiveCount,
  });
}

/**
 * The Lambda handler.
 *
 * @example
 * // SQS event source with reportBatchItemFailures: true
 * export { handler } from './functions/aws/handlers/worker.ts';
 */
export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, (record: SQSRecord) => handleRecord(record, context), processor, {
    context,
    // A batch whose every record failed is reported like any other, not thrown as an invocation error.
    throwOnFullBatchFailure: false,
  });
