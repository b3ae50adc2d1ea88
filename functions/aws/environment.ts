/**
 * The AWS runtime's configuration (the Lambda functions' environment, see the contract) and the
 * clients built from it, once per container. Clients use the SDK's default resolution, so the
 * standard AWS_* variables (region, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SQS, ...) apply.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { s3ClientConfig, S3Store } from './s3-store.ts';
import { SqsQueue } from './sqs-queue.ts';

const envSchema = z.object({
  FANOUT_BUCKET: z.string().min(1),
  FANOUT_QUEUE_URL: z.string().url(),
  FANOUT_TOKEN_SECRET_ARN: z.string().optional(),
  FANOUT_TOKEN: z.string().optional(),
  FANOUT_CALLBACK_SECRET: z.string().optional(),
  /** The chunk queue's redrive maxReceiveCount (the stack sets both from one value). */
  FANOUT_MAX_RECEIVE_COUNT: z.coerce.number().int().min(1).default(5),
  /** The chunk queue's visibility timeout, seconds. */
  FANOUT_VISIBILITY_TIMEOUT: z.coerce.number().int().min(1).default(960),
  /** The dead-letter queue's ARN: records from it get chunk_failed records. */
  FANOUT_DLQ_ARN: z.string().optional(),
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
}

let cached: AwsRuntime | undefined;

/** The store, queue and fetcher of this container, built on first use. */
export function awsRuntime(env: NodeJS.ProcessEnv = process.env): AwsRuntime {
  if (cached) return cached;
  const config = readAwsEnv(env);
  const s3 = new S3Client(s3ClientConfig(env));
  const sqs = new SQSClient({});
  cached = {
    env: config,
    store: new S3Store(s3, config.FANOUT_BUCKET),
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
