/**
 * The AWS runtime's configuration (the Lambda functions' environment, see the contract) and the
 * clients built from it, once per container. Clients use the SDK's default resolution, so the
 * standard AWS_* variables (region, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SQS, ...) apply.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { CONTINUATION_DEFAULTS } from '../core/continuation.ts';
import { RESULT_PAGE_DEFAULTS } from '../core/results.ts';
import { StoreLedger, bindLedger, type Ledger } from '../core/ledger.ts';
import { DynamoLedger } from './dynamo-ledger.ts';
import { s3ClientConfig, S3Store } from './s3-store.ts';
import { SqsQueue } from './sqs-queue.ts';

/** Defaults of the optional variables, stated once. */
export const AWS_ENV_DEFAULTS = {
  /** FANOUT_WORKER_TIMEOUT_SECONDS: the stack's default worker timeout (it always sets the variable). */
  workerTimeoutSeconds: 300,
  /** FANOUT_DLQ_MAX_RECEIVE_COUNT. */
  dlqMaxReceiveCount: 3,
} as const;

const envSchema = z.object({
  FANOUT_BUCKET: z.string().min(1),
  FANOUT_QUEUE_URL: z.string().url(),
  FANOUT_TOKEN_SECRET_ARN: z.string().optional(),
  FANOUT_TOKEN: z.string().optional(),
  /** Signs completion callbacks; wins over FANOUT_CALLBACK_SECRET_ARN when set. */
  FANOUT_CALLBACK_SECRET: z.string().optional(),
  /** Secrets Manager secret holding the callback signing secret (the stack's way). */
  FANOUT_CALLBACK_SECRET_ARN: z.string().optional(),
  /**
   * The DynamoDB ledger table (pk S, sk S, TTL expiresAt): completion and status at constant cost.
   * Without it the store is listed on every chunk (O(chunks) each), which only suits small tests.
   */
  FANOUT_LEDGER_TABLE: z.string().optional(),
  /** The worker function's timeout, seconds: job timeoutMs must leave room within it. */
  FANOUT_WORKER_TIMEOUT_SECONDS: z.coerce.number().int().min(1).optional(),
  /** The chunk queue's redrive maxReceiveCount (the stack sets both from one value). */
  FANOUT_MAX_RECEIVE_COUNT: z.coerce.number().int().min(1).default(5),
  /** The chunk queue's visibility timeout, seconds. */
  FANOUT_VISIBILITY_TIMEOUT: z.coerce.number().int().min(1).default(960),
  /** The dead-letter queue's ARN: records from it get chunk_failed records. */
  FANOUT_DLQ_ARN: z.string().optional(),
  /**
   * Tries a dead letter gets (its ApproximateReceiveCount on the dead-letter queue); on the last one
   * the handler gives up without throwing, so a poison message cannot loop.
   */
  FANOUT_DLQ_MAX_RECEIVE_COUNT: z.coerce.number().int().min(1).optional(),
  /** The schedules file's text (the stack sets it on the API from schedules.json): GET /schedules lists it. */
  FANOUT_SCHEDULES_JSON: z.string().optional(),
  /**
   * The worker puts a `Job Finished` event on this EventBridge bus (name or ARN) when a job ends;
   * unset, no event is sent. The stack sets `default`.
   */
  FANOUT_EVENT_BUS: z.string().optional(),
});

export type AwsEnv = z.infer<typeof envSchema>;

/** Reads and checks the environment; a missing variable is named. */
export function readAwsEnv(env: NodeJS.ProcessEnv = process.env): AwsEnv {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`environment variable ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

export interface AwsRuntime {
  env: AwsEnv;
  store: S3Store;
  queue: SqsQueue;
  /** DynamoDB with FANOUT_LEDGER_TABLE, else the store-listing fallback; bound to `store`. */
  ledger: Ledger;
}

let cached: AwsRuntime | undefined;

/** The store, queue and fetcher of this container, built on first use. */
export function awsRuntime(env: NodeJS.ProcessEnv = process.env): AwsRuntime {
  if (cached) return cached;
  const config = readAwsEnv(env);
  const s3 = new S3Client(s3ClientConfig(env));
  const sqs = new SQSClient({});
  const store = new S3Store(s3, config.FANOUT_BUCKET);
  const ledger = config.FANOUT_LEDGER_TABLE ? new DynamoLedger(new DynamoDBClient({}), config.FANOUT_LEDGER_TABLE) : new StoreLedger(store);
  // jobStatus and cancelJob called with this store (the API) read the same ledger.
  bindLedger(store, ledger);
  cached = {
    env: config,
    store,
    ledger,
    queue: new SqsQueue(sqs, {
      queueUrl: config.FANOUT_QUEUE_URL,
      maxReceiveCount: config.FANOUT_MAX_RECEIVE_COUNT,
      visibilityTimeoutMs: config.FANOUT_VISIBILITY_TIMEOUT * 1000,
    }),
  };
  return cached;
}

/** Forgets the cached runtime (tests change the environment between cases). */
export function resetAwsRuntime(): void {
  cached = undefined;
}

/**
 * The worker function's timeout, seconds: FANOUT_WORKER_TIMEOUT_SECONDS read through the
 * environment's own schema, else the default. Read per call: tests change it between cases.
 */
export function workerTimeoutSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const parsed = envSchema.shape.FANOUT_WORKER_TIMEOUT_SECONDS.safeParse(env.FANOUT_WORKER_TIMEOUT_SECONDS);
  return (parsed.success ? parsed.data : undefined) ?? AWS_ENV_DEFAULTS.workerTimeoutSeconds;
}

/**
 * The largest per-attempt `timeoutMs` a job may ask for on AWS: one attempt must fit in a worker's
 * time with the continuation margin kept at both ends (setup, and writing the part file), or a chunk
 * could never make progress (each delivery would hand it on untouched).
 *
 * @example
 * if (options.timeoutMs > maxJobTimeoutMs(workerTimeoutSeconds())) throw new OptionsError(...);
 */
export function maxJobTimeoutMs(workerSeconds: number): number {
  return workerSeconds * 1000 - 2 * CONTINUATION_DEFAULTS.marginMs;
}

const MiB = 1024 * 1024;
const limit = (fallback: number) => z.coerce.number().int().min(0).default(fallback);

/**
 * Limits of the AWS runtime, stated once: the API's and the schedule function's; each can be
 * lowered through its variable (tests do). Read per call, so a test may change them between cases.
 */
const limitsSchema = z.object({
  /**
   * Stored lists larger than this are planned in slices by the worker function: the API answers
   * within API Gateway's 30 s, and no single invocation reads a ten-million-line list.
   */
  FANOUT_PLAN_IN_SLICES_ABOVE_BYTES: limit(4 * MiB),
  /**
   * Time a POST /jobs call (and a schedule run) spends planning before it hands the rest to the
   * workers and answers `planning`; a GET /jobs page ends after half of it. Well under API Gateway's
   * 29 s, leaving room for the last writes in flight, the hand-on message and a cold start.
   */
  FANOUT_API_BUDGET_MS: limit(20_000),
  /**
   * Largest POST /jobs body on AWS: a Lambda request carries 6 MB, and a text body may arrive
   * base64-encoded (4/3 larger). Larger lists go through POST /uploads (`fanout submit` switches at
   * the same size).
   */
  FANOUT_MAX_REQUEST_BYTES: limit(4 * MiB),
  /**
   * Result sets whose gzip files exceed this are answered with pages of presigned S3 URLs unasked
   * (records inflate ~5-10x, and paging through them costs a request per page).
   */
  FANOUT_INLINE_RESULTS_MAX_BYTES: limit(512 * 1024),
  /**
   * Every results response on AWS is a page of at most this many records, bytes and links (see
   * RESULT_PAGE_DEFAULTS); at least 1 each, or a page could hold nothing and its `next` never move.
   */
  FANOUT_RESULT_PAGE_MAX_RECORDS: limit(RESULT_PAGE_DEFAULTS.maxRecords).pipe(z.number().min(1)),
  FANOUT_RESULT_PAGE_MAX_BYTES: limit(RESULT_PAGE_DEFAULTS.maxBytes).pipe(z.number().min(1)),
  FANOUT_RESULT_PAGE_MAX_LINKS: limit(RESULT_PAGE_DEFAULTS.maxLinks).pipe(z.number().min(1)),
});

export type AwsLimits = z.infer<typeof limitsSchema>;

/**
 * Reads the limits (defaults for unset or empty variables); a malformed value is named.
 *
 * @example
 * const deadline = Date.now() + awsLimits().FANOUT_API_BUDGET_MS;
 */
export function awsLimits(env: NodeJS.ProcessEnv = process.env): AwsLimits {
  const given = Object.fromEntries(Object.keys(limitsSchema.shape).flatMap((name) => (env[name]?.trim() ? [[name, env[name]!.trim()]] : [])));
  const parsed = limitsSchema.safeParse(given);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`environment variable ${issue.path.join('.')}: ${issue.message} (got ${JSON.stringify(given[String(issue.path[0])])})`);
  }
  return parsed.data;
}

/** How long presigned URLs (uploads, result files) stay valid. */
export const PRESIGN_SECONDS = 3600;
