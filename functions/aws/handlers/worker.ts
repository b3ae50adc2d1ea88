/**
 * The worker function: an SQS event handler, a thin adapter over the shared message handler
 * (core/messages.ts). Powertools' batch processor turns each failed record into a
 * `batchItemFailures` entry (partial batch response), so only those messages come back. Records
 * from the dead-letter queue go through the handler's dead-letter path, whose last try never throws.
 *
 * Observability: one child logger per record (its own jobId and messageId, so parallel records never
 * share keys), and Powertools Metrics (EMF) in namespace `fanout`, service `fanout-worker`:
 * UrlsFetched, UrlsSucceeded, UrlsFailed, UrlsFailedByCode (dimension `code`), ChunksFailed,
 * ChunkDuration (ms) and JobsFinished. These names are what the stack's alarms and dashboard read.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { Fetcher } from '../../core/engine/fetcher.ts';
import { AddressGuard } from '../../core/engine/guard.ts';
import { PROXY_DEFAULTS, proxyAuthForFromEnv as proxyAuthFor, proxyAuthFromEnv } from '../../core/engine/proxy.ts';
import { ConfigError } from '../../core/errors.ts';
import { handleMessage, type MessageDeps, type MessageResult } from '../../core/messages.ts';
import { callbackSecretSource } from '../callback-secret.ts';
import { jobEventPublisher } from '../job-events.ts';
import { AWS_ENV_DEFAULTS, awsRuntime, type AwsRuntime } from '../environment.ts';
import { awsHeaderSecrets } from '../header-secrets.ts';
import { TOKEN_CACHE_MS } from '../token.ts';

/** Metric names and dimensions, stated once (the infra's alarms and dashboard use the same). */
export const WORKER_METRICS = {
  namespace: 'fanout',
  service: 'fanout-worker',
  urlsFetched: 'UrlsFetched',
  urlsSucceeded: 'UrlsSucceeded',
  urlsFailed: 'UrlsFailed',
  urlsFailedByCode: 'UrlsFailedByCode',
  chunksFailed: 'ChunksFailed',
  chunkDuration: 'ChunkDuration',
  jobsFinished: 'JobsFinished',
} as const;

const logger = new Logger({ serviceName: WORKER_METRICS.service });
export const metrics = new Metrics({ namespace: WORKER_METRICS.namespace, serviceName: WORKER_METRICS.service });
const processor = new BatchProcessor(EventType.SQS);
/** The container's fetcher, the proxies' credentials it was made with, and when they were last read. */
let current: { fetcher: Fetcher; auth: string | undefined; readAt: number } | undefined;
/** A read of the credentials in progress: the records of a batch share it (and so one fetcher). */
let reading: Promise<Fetcher> | undefined;
/** A fetcher without proxy credentials, used while they cannot be resolved. */
let withoutProxyAuth: Fetcher | undefined;
/** Fetchers replaced during an invocation, closed when the next begins (none of its records are left then). */
const retired: Fetcher[] = [];
/** When to try resolving the proxies' credentials again after a failure. */
let proxyAuthRetryAt = 0;
const PROXY_AUTH_RETRY_MS = 60_000;
let secret: { env: AwsRuntime['env']; get: () => Promise<string | undefined> } | undefined;
/** The headerEnv option's values: this function's environment, or Secrets Manager (cached per container). */
const headerSecrets = awsHeaderSecrets();

// Jobs name their proxies: the credentials go only to the operator's (FANOUT_PROXY_AUTH_FOR, the stack's proxyAuthFor).
const newFetcher = (proxyAuth: string | undefined, authFor: readonly string[]) =>
  new Fetcher(AddressGuard.fromEnv(process.env, true), undefined, { proxyAuth: proxyAuth ?? '', proxyAuthFor: authFor });

/** FANOUT_PROXY_AUTH's `user:password`: the variable's value, or the Secrets Manager secret it names. */
async function proxyAuth(): Promise<string | undefined> {
  if (!process.env[PROXY_DEFAULTS.authEnv]) return undefined;
  const value = await headerSecrets(PROXY_DEFAULTS.authEnv);
  if (!value?.trim()) throw new ConfigError(`${PROXY_DEFAULTS.authEnv}: the secret it names holds no string`);
  return proxyAuthFromEnv({ [PROXY_DEFAULTS.authEnv]: value.trim() });
}

/**
 * One fetcher per container, its Agents kept warm across invocations. Server mode: private
 * addresses are blocked unless FANOUT_ALLOW_PRIVATE / FANOUT_ALLOW_CIDRS open them. The proxies'
 * credentials are resolved first: FANOUT_PROXY_AUTH may hold a Secrets Manager ARN (the stack's
 * `proxyAuthSecret`), read again every TOKEN_CACHE_MS, so a rotation reaches running containers
 * (a new fetcher then takes the new credentials; chunks in flight finish on the old one). While
 * they cannot be resolved (Secrets Manager failing, a secret without `user:password`, a bad
 * FANOUT_PROXY_AUTH_FOR), messages are handled with the credentials the container had, or without
 * any, logged, and they are tried again a minute later: jobs without a proxy go on, and a dead
 * letter's last try never fails for it.
 */
async function containerFetcher(log: Logger): Promise<Fetcher> {
  if (current) {
    // A due read runs in the background: no record waits for Secrets Manager once the container
    // has credentials (a slow read held every record of the batch, proxy or not).
    if (process.env[PROXY_DEFAULTS.authEnv] && Date.now() - current.readAt >= TOKEN_CACHE_MS) void read(log);
    return current.fetcher;
  }
  if (Date.now() < proxyAuthRetryAt) return (withoutProxyAuth ??= newFetcher(undefined, []));
  return read(log);
}

/** One read of the credentials at a time; the records that need it share it. */
function read(log: Logger): Promise<Fetcher> {
  reading ??= readProxyAuth(log).finally(() => (reading = undefined));
  return reading;
}

async function readProxyAuth(log: Logger): Promise<Fetcher> {
  try {
    const auth = await proxyAuth();
    const authFor = proxyAuthFor();
    if (withoutProxyAuth) retired.push(withoutProxyAuth);
    withoutProxyAuth = undefined;
    if (current && current.auth === auth) {
      current.readAt = Date.now();
      return current.fetcher;
    }
    // The one it replaces is closed at the next invocation: a record of this one may still be
    // fetching through it (and its sockets count against the container's descriptors until then).
    if (current) retired.push(current.fetcher);
    current = { fetcher: newFetcher(auth, authFor), auth, readAt: Date.now() };
    return current.fetcher;
  } catch (error) {
    log.error(`the proxies' credentials cannot be resolved: ${current ? 'the ones read before are kept' : 'proxies get none'} until they can`, { error: (error as Error).message });
    // readProxyAuth never rejects: a background read has nobody to catch it.
    if (current) {
      current.readAt = Date.now() - TOKEN_CACHE_MS + PROXY_AUTH_RETRY_MS;
      return current.fetcher;
    }
    proxyAuthRetryAt = Date.now() + PROXY_AUTH_RETRY_MS;
    return (withoutProxyAuth ??= newFetcher(undefined, []));
  }
}

async function deps(rt: AwsRuntime, log: Logger): Promise<MessageDeps> {
  if (secret?.env !== rt.env) secret = { env: rt.env, get: callbackSecretSource(rt.env) };
  return {
    store: rt.store,
    fetcher: await containerFetcher(log),
    ledger: rt.ledger,
    queue: rt.queue,
    callbackSecret: secret.get,
    headerSecrets,
    publish: jobEventPublisher(rt.env),
    onJobFinished: (manifest) => {
      metrics.addMetric(WORKER_METRICS.jobsFinished, MetricUnit.Count, 1);
      log.info('job finished', { state: manifest.state, total: manifest.total, failed: manifest.failed, lostChunks: manifest.lostChunks?.length ?? 0 });
    },
  };
}

/** Metrics of one handled message. */
function record(result: MessageResult, ms: number): void {
  const chunk = result.chunk;
  if (result.type === 'chunk' && (result.outcome === 'lost' || result.outcome === 'chunk-failed' || result.outcome === 'abandoned')) {
    metrics.addMetric(WORKER_METRICS.chunksFailed, MetricUnit.Count, 1);
  }
  if (!chunk || chunk.counts.count === 0) return;
  const { counts } = chunk;
  metrics.addMetric(WORKER_METRICS.urlsFetched, MetricUnit.Count, counts.count);
  metrics.addMetric(WORKER_METRICS.urlsSucceeded, MetricUnit.Count, counts.succeeded);
  metrics.addMetric(WORKER_METRICS.urlsFailed, MetricUnit.Count, counts.failed);
  metrics.addMetric(WORKER_METRICS.chunkDuration, MetricUnit.Milliseconds, ms);
  for (const [code, n] of Object.entries(counts.byError)) {
    const single = metrics.singleMetric();
    single.addDimension('code', code);
    single.addMetric(WORKER_METRICS.urlsFailedByCode, MetricUnit.Count, n);
  }
}

/** One SQS record: any message type, live or dead-lettered. Throws to have the message retried. */
export async function handleRecord(sqsRecord: SQSRecord, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<MessageResult> {
  const rt = awsRuntime();
  let jobId: string | undefined;
  try {
    jobId = (JSON.parse(sqsRecord.body) as { jobId?: string }).jobId;
  } catch {
    // Malformed: the handler below says so.
  }
  // A child per record: records of a batch run in parallel and must not share keys.
  const log = logger.createChild({ persistentKeys: { jobId, messageId: sqsRecord.messageId } });
  const deadLetter = Boolean(rt.env.FANOUT_DLQ_ARN && sqsRecord.eventSourceARN === rt.env.FANOUT_DLQ_ARN);
  const receiveCount = Number(sqsRecord.attributes.ApproximateReceiveCount ?? '1');
  const started = Date.now();
  try {
    const result = await handleMessage(await deps(rt, log), sqsRecord.body, {
      receiveCount,
      maxReceiveCount: deadLetter ? (rt.env.FANOUT_DLQ_MAX_RECEIVE_COUNT ?? AWS_ENV_DEFAULTS.dlqMaxReceiveCount) : rt.env.FANOUT_MAX_RECEIVE_COUNT,
      deadLetter,
      deliveries: rt.env.FANOUT_MAX_RECEIVE_COUNT,
      deadline: started + context.getRemainingTimeInMillis(),
    });
    const ms = Date.now() - started;
    record(result, ms);
    const level = result.deadLetter ? 'error' : 'info';
    log[level](`${result.type} ${result.deadLetter ? 'dead letter' : 'message'} handled`, {
      outcome: result.outcome,
      receiveCount,
      ms,
      ...(result.chunk ? { chunk: result.chunk.chunk, records: result.chunk.counts.count, failed: result.chunk.counts.failed } : {}),
      ...(result.delivery ? { callback: result.delivery.entry.state, status: result.delivery.record?.status, attempts: result.delivery.entry.attempts } : {}),
      ...(result.error ? { error: (result.error as Error)?.message ?? String(result.error) } : {}),
    });
    return result;
  } catch (error) {
    log.warn('message failed; it will be retried', { receiveCount, error: (error as Error)?.message ?? String(error) });
    throw error;
  }
}

/**
 * The Lambda handler.
 *
 * @example
 * // SQS event source with reportBatchItemFailures: true
 * export { handler } from './functions/aws/handlers/worker.ts';
 */
export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  // A container runs one invocation at a time: what earlier ones replaced is idle now.
  for (const old of retired.splice(0)) void old.close().catch(() => {});
  try {
    return await processPartialResponse(event, (r: SQSRecord) => handleRecord(r, context), processor, {
      context,
      // A batch whose every record failed is reported like any other, not thrown as an invocation error.
      throwOnFullBatchFailure: false,
    });
  } finally {
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  }
};
