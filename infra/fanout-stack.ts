/**
 * fanout on AWS, in the user's own account: an HTTP API in front of the Hono app, a chunk queue
 * with a dead-letter queue feeding worker Lambdas (partial batch responses), a private bucket for
 * jobs and results, the API token in Secrets Manager, EventBridge Scheduler entries from the same
 * schedules.json `fanout serve` reads, alarms, JSON logs, and IAM scoped to what each function does.
 * The functions deploy exactly the bundles `npm run build` writes to dist/.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CfnOutput, Duration, RemovalPolicy, Stack, TimeZone, Validations, type StackProps } from 'aws-cdk-lib';
import { HttpApi, type CfnStage, type ThrottleSettings } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Alarm, ComparisonOperator, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { Effect, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, Code, Function as LambdaFunction, LoggingFormat, Runtime, type CfnFunction, type FunctionProps } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership, type CfnBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { parseSchedules, type Schedule as ScheduleEntry } from '../functions/core/schedules.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Settings a user may change (cdk.json context or `cdk deploy -c name=value`), defaults stated once. */
export interface FanoutSettings {
  /** Worker Lambdas running at once (the SQS event source's maximum concurrency). */
  maxConcurrency: number;
  /** Worker timeout; chunks running longer hand the rest on (see core/continuation.ts). */
  workerTimeoutSeconds: number;
  workerMemoryMb: number;
  /** Deliveries of a chunk message before the dead-letter queue. */
  maxReceiveCount: number;
  /** Jobs (records, bodies) expire after this many days. */
  retentionDays: number;
  /** The schedules file, relative to the project (skipped when absent). */
  schedulesFile: string;
  /** Where the bundles are (npm run build). */
  distDir: string;
}

export const DEFAULT_SETTINGS: FanoutSettings = {
  maxConcurrency: 10,
  workerTimeoutSeconds: 300,
  workerMemoryMb: 1024,
  maxReceiveCount: 5,
  retentionDays: 30,
  schedulesFile: 'schedules.json',
  distDir: 'dist',
};

export interface FanoutStackProps extends StackProps {
  settings?: Partial<FanoutSettings>;
}

/** Reads settings from context, falling back to the defaults. */
export function settingsFrom(scope: Construct, overrides: Partial<FanoutSettings> = {}): FanoutSettings {
  const out = { ...DEFAULT_SETTINGS };
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof FanoutSettings)[]) {
    const value = overrides[key] ?? scope.node.tryGetContext(key);
    if (value === undefined) continue;
    (out as Record<string, unknown>)[key] = typeof DEFAULT_SETTINGS[key] === 'number' ? Number(value) : String(value);
  }
  return out;
}

/** Acknowledges a cdk-nag finding on a construct, with its one-line reason. */
function acknowledge(construct: Construct, id: string, reason: string): void {
  Validations.of(construct).acknowledge({ id, reason });
}

export class FanoutStack extends Stack {
  readonly settings: FanoutSettings;
  readonly api: HttpApi;
  readonly bucket: Bucket;
  readonly queue: Queue;
  readonly deadLetters: Queue;
  readonly apiFunction: LambdaFunction;
  readonly workerFunction: LambdaFunction;
  readonly scheduleFunction: LambdaFunction;
  readonly tokenSecret: Secret;
  readonly schedules: ScheduleEntry[];

  constructor(scope: Construct, id: string, props: FanoutStackProps = {}) {
    super(scope, id, { description: 'fanout: serverless fan-out fetcher', ...props });
    const settings = (this.settings = settingsFrom(this, props.settings));

    // --- storage -------------------------------------------------------------------------------
    const accessLogs = new Bucket(this, 'AccessLogs', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    acknowledge(accessLogs, 'AwsSolutions-S1', 'this is the access-log bucket; logging it into itself would loop');

    this.bucket = new Bucket(this, 'Results', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'results/',
      lifecycleRules: [
        { id: 'expire-old-jobs', prefix: 'jobs/', expiration: Duration.days(settings.retentionDays) },
        { id: 'expire-uploads', prefix: 'uploads/', expiration: Duration.days(7) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.tokenSecret = new Secret(this, 'ApiToken', {
      description: 'fanout API bearer token',
      generateSecretString: { passwordLength: 48, excludePunctuation: true, includeSpace: false },
    });
    acknowledge(this.tokenSecret, 'AwsSolutions-SMG4', 'a static bearer token; rotate it by putting a new value (the API re-reads it every 5 minutes)');

    // --- queues --------------------------------------------------------------------------------
    // The worker consumes the dead letters too, so they get the same visibility margin.
    const visibilityTimeout = Duration.seconds(settings.workerTimeoutSeconds * 6);
    this.deadLetters = new Queue(this, 'ChunkDeadLetters', {
      visibilityTimeout,
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    acknowledge(this.deadLetters, 'AwsSolutions-SQS3', 'this is the dead-letter queue; its records are turned into chunk_failed records');
    this.queue = new Queue(this, 'Chunks', {
      // Well above the worker timeout (AWS advises 6x for event source mappings), so a running
      // chunk is never delivered twice just for being slow.
      visibilityTimeout,
      retentionPeriod: Duration.days(4),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetters, maxReceiveCount: settings.maxReceiveCount },
    });

    // --- functions -----------------------------------------------------------------------------
    const environment = {
      FANOUT_BUCKET: this.bucket.bucketName,
      FANOUT_QUEUE_URL: this.queue.queueUrl,
      FANOUT_TOKEN_SECRET_ARN: this.tokenSecret.secretArn,
      FANOUT_MAX_RECEIVE_COUNT: String(settings.maxReceiveCount),
      FANOUT_VISIBILITY_TIMEOUT: String(settings.workerTimeoutSeconds * 6),
      FANOUT_DLQ_ARN: this.deadLetters.queueArn,
      NODE_OPTIONS: '--enable-source-maps',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    };
    const fn = (name: string, bundle: string, extra: Partial<FunctionProps>) => {
      const code = join(ROOT, settings.distDir, bundle);
      if (!existsSync(join(code, 'index.mjs'))) throw new Error(`${code}/index.mjs is missing: run npm run build first`);
      const logGroup = new LogGroup(this, `${name}Logs`, { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
      return new LambdaFunction(this, name, {
        runtime: Runtime.NODEJS_24_X,
        architecture: Architecture.ARM_64,
        handler: 'index.handler',
        code: Code.fromAsset(code),
        environment,
        loggingFormat: LoggingFormat.JSON,
        logGroup,
        ...extra,
      });
    };
    this.apiFunction = fn('Api', 'api', { memorySize: 512, timeout: Duration.seconds(29), description: 'fanout HTTP API (Hono)' });
    this.workerFunction = fn('Worker', 'worker', {
      memorySize: settings.workerMemoryMb,
      timeout: Duration.seconds(settings.workerTimeoutSeconds),
      description: 'fanout worker: fetches chunks, plans large lists',
    });
    this.scheduleFunction = fn('ScheduleTarget', 'schedule', { memorySize: 256, timeout: Duration.seconds(60), description: 'fanout schedule target' });

    this.workerFunction.addEventSource(
      new SqsEventSource(this.queue, { batchSize: 2, reportBatchItemFailures: true, maxConcurrency: settings.maxConcurrency }),
    );
    this.workerFunction.addEventSource(new SqsEventSource(this.deadLetters, { batchSize: 1, reportBatchItemFailures: true, maxConcurrency: 2 }));

    // --- least-privilege IAM ---------------------------------------------------------------------
    const objects = (...prefixes: string[]) => prefixes.map((p) => this.bucket.arnForObjects(p));
    const s3 = (actions: string[], resources: string[]) => new PolicyStatement({ effect: Effect.ALLOW, actions, resources });
    const listBucket = s3(['s3:ListBucket'], [this.bucket.bucketArn]);
    // API: plans jobs (reads uploads, writes jobs/), answers status and results, makes upload slots.
    this.apiFunction.addToRolePolicy(s3(['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], objects('jobs/*', 'uploads/*')));
    this.apiFunction.addToRolePolicy(listBucket);
    // Worker: fetches chunks into jobs/, plans large lists from uploads/ and lists/.
    this.workerFunction.addToRolePolicy(s3(['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], objects('jobs/*')));
    this.workerFunction.addToRolePolicy(s3(['s3:GetObject'], objects('uploads/*', 'lists/*')));
    this.workerFunction.addToRolePolicy(listBucket);
    // Schedule target: reads its list from lists/, plans into jobs/.
    this.scheduleFunction.addToRolePolicy(s3(['s3:GetObject'], objects('lists/*')));
    this.scheduleFunction.addToRolePolicy(s3(['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], objects('jobs/*')));
    this.scheduleFunction.addToRolePolicy(listBucket);
    for (const f of [this.apiFunction, this.workerFunction, this.scheduleFunction]) this.queue.grantSendMessages(f);
    this.tokenSecret.grantRead(this.apiFunction);
    this.tokenSecret.grantRead(this.workerFunction); // signs completion callbacks

    const bucketId = this.getLogicalId(this.bucket.node.defaultChild as CfnBucket);
    for (const f of [this.apiFunction, this.workerFunction, this.scheduleFunction]) {
      const role = f.role!;
      acknowledge(role, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', 'grants only writing this function\'s own logs');
      for (const prefix of ['jobs', 'uploads', 'lists']) {
        acknowledge(role, `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${prefix}/*]`, `job ids and upload ids are made at run time: access is scoped to the ${prefix}/ prefix`);
      }
    }

    // --- HTTP API ------------------------------------------------------------------------------
    const accessLog = new LogGroup(this, 'ApiAccessLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
    this.api = new HttpApi(this, 'HttpApi', {
      description: 'fanout API: bearer-token authenticated inside the app',
      defaultIntegration: new HttpLambdaIntegration('App', this.apiFunction),
      createDefaultStage: true,
    });
    const stage = this.api.defaultStage!.node.defaultChild as CfnStage;
    stage.accessLogSettings = {
      destinationArn: accessLog.logGroupArn,
      format: JSON.stringify({
        requestId: '$context.requestId',
        ip: '$context.identity.sourceIp',
        method: '$context.httpMethod',
        path: '$context.path',
        status: '$context.status',
        latencyMs: '$context.responseLatency',
      }),
    };
    const throttle: ThrottleSettings = { rateLimit: 200, burstLimit: 400 };
    stage.defaultRouteSettings = { throttlingRateLimit: throttle.rateLimit, throttlingBurstLimit: throttle.burstLimit };
    for (const route of this.api.node.findAll().filter((c) => c.node.id.startsWith('DefaultRoute'))) {
      acknowledge(route, 'AwsSolutions-APIG4', 'the app authenticates every data route with the bearer token (functions/api/auth.ts); /health, the dashboard shell and the docs are public by design');
    }

    // --- schedules -----------------------------------------------------------------------------
    const schedulesPath = join(ROOT, settings.schedulesFile);
    this.schedules = existsSync(schedulesPath) ? parseSchedules(readFileSync(schedulesPath, 'utf8')) : [];
    for (const entry of this.schedules) {
      // The schedule function may read lists/ only (least privilege): say so at synth, not at 3 a.m.
      if (!entry.list.startsWith('lists/')) throw new Error(`schedule "${entry.name}": on AWS its list must be under lists/ in the bucket, not ${entry.list}`);
      new Schedule(this, `Schedule-${entry.name}`, {
        description: `fanout: ${entry.list}`,
        schedule: ScheduleExpression.expression(entry.expression, TimeZone.of(entry.timezone)),
        target: new LambdaInvoke(this.scheduleFunction, { input: ScheduleTargetInput.fromObject({ schedule: entry }), retryAttempts: 2 }),
        enabled: entry.enabled,
      });
    }
    const scheduleFnId = this.getLogicalId(this.scheduleFunction.node.defaultChild as CfnFunction);
    for (const role of this.node.children.filter((c) => c.node.id.startsWith('SchedulerRoleForTarget'))) {
      acknowledge(role, `AwsSolutions-IAM5[Resource::<${scheduleFnId}.Arn>:*]`, 'the Scheduler may invoke any version of the schedule function, and only that function');
    }

    // --- alarms --------------------------------------------------------------------------------
    new Alarm(this, 'DeadLettersAlarm', {
      alarmDescription: 'chunk messages reached the dead-letter queue (their URLs get chunk_failed records)',
      metric: this.deadLetters.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5) }),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    new Alarm(this, 'WorkerErrorsAlarm', {
      alarmDescription: 'the worker function failed invocations',
      metric: this.workerFunction.metricErrors({ period: Duration.minutes(5) }),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });

    new CfnOutput(this, 'ApiUrl', { value: this.api.apiEndpoint, description: 'FANOUT_API' });
    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new CfnOutput(this, 'TokenSecretArn', {
      value: this.tokenSecret.secretArn,
      description: 'aws secretsmanager get-secret-value --secret-id ARN --query SecretString --output text',
    });
    new CfnOutput(this, 'QueueUrl', { value: this.queue.queueUrl });
  }
}
