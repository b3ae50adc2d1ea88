/**
 * fanout on AWS, in the user's own account: an HTTP API in front of the Hono app, a chunk queue
 * with a dead-letter queue feeding worker Lambdas (partial batch responses), a private bucket for
 * jobs and results, the API token in Secrets Manager, EventBridge Scheduler entries from the same
 * schedules.json `fanout serve` reads, a DynamoDB job ledger, alarms on an SNS topic and a dashboard
 * (observability.ts), JSON logs, and IAM scoped to what each function does. The app bundles the
 * functions itself at synth (bundle.ts), with the same build as `npm run build`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CfnOutput, Duration, RemovalPolicy, Stack, TimeZone, Validations, type StackProps } from 'aws-cdk-lib';
import { HttpApi, type CfnStage, type ThrottleSettings } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { Effect, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, Function as LambdaFunction, LoggingFormat, Runtime, Tracing, type CfnFunction, type FunctionProps } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership, type CfnBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { ENV_VAR_NAME, RESERVED_VARIABLE } from '../functions/core/header-env.ts';
import { parseSchedules, type Schedule as ScheduleEntry } from '../functions/core/schedules.ts';
import type { BundleName } from '../scripts/build.ts';
import { handlerCode } from './bundle.ts';
import { Observability } from './observability.ts';

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
  /**
   * Receives of a message, counted from its first delivery on the chunk queue, before a dead letter
   * is parked. Above maxReceiveCount, so a dead letter gets at least the difference in tries on the
   * dead-letter queue whether or not SQS resets the count when it moves a message there.
   */
  deadLetterMaxReceiveCount: number;
  /** Jobs (records, bodies) expire after this many days. */
  retentionDays: number;
  /** The schedules file, relative to the project (skipped when absent). */
  schedulesFile: string;
  /** E-mail address subscribed to the alarm topic (it must confirm); empty: no subscription. */
  alarmEmail: string;
  /** X-Ray active tracing for the three functions. */
  tracing: boolean;
  /**
   * Secrets the worker reads for jobs' `headerEnv`: environment variable -> Secrets Manager secret ARN
   * (`{"API_TOKEN": "arn:aws:secretsmanager:..."}`). The worker gets each variable, holding the ARN,
   * and read access to exactly those secrets; the values never enter the template.
   */
  headerSecrets: Record<string, string>;
  /**
   * A Secrets Manager secret ARN holding `user:password` for the jobs' proxies (the `proxy` option):
   * the worker gets FANOUT_PROXY_AUTH holding the ARN, and read access to that secret alone; the
   * credentials never enter the template. Empty: proxies get no credentials (a job's `proxy` URL may
   * not carry them: job options are stored and shown).
   */
  proxyAuthSecret: string;
  /**
   * The proxies (comma-separated http(s) URLs, as jobs name them in `proxy`) that get those
   * credentials; any other proxy a job names gets none. Required with `proxyAuthSecret`.
   */
  proxyAuthFor: string;
}

export const DEFAULT_SETTINGS: FanoutSettings = {
  maxConcurrency: 10,
  workerTimeoutSeconds: 300,
  workerMemoryMb: 1024,
  maxReceiveCount: 5,
  deadLetterMaxReceiveCount: 10,
  retentionDays: 30,
  schedulesFile: 'schedules.json',
  alarmEmail: '',
  tracing: false,
  headerSecrets: {},
  proxyAuthSecret: '',
  proxyAuthFor: '',
};

export interface FanoutStackProps extends StackProps {
  settings?: Partial<FanoutSettings>;
}

/**
 * Reads settings from context (`-c name=value` gives strings), falling back to the defaults; a value
 * of the wrong kind stops the synth with the setting's name.
 *
 * @example
 * settingsFrom(app, { tracing: true }).workerTimeoutSeconds; // 300 unless the context says otherwise
 */
export function settingsFrom(scope: Construct, overrides: Partial<FanoutSettings> = {}): FanoutSettings {
  const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof FanoutSettings)[]) {
    const value: unknown = overrides[key] ?? scope.node.tryGetContext(key);
    if (value === undefined || value === null) continue;
    out[key] = settingValue(key, DEFAULT_SETTINGS[key], value);
  }
  const settings = out as unknown as FanoutSettings;
  if (settings.deadLetterMaxReceiveCount <= settings.maxReceiveCount) {
    throw new Error(`setting deadLetterMaxReceiveCount: must be above maxReceiveCount (${settings.maxReceiveCount}), got ${settings.deadLetterMaxReceiveCount}`);
  }
  if (settings.proxyAuthSecret && !SECRET_ARN.test(settings.proxyAuthSecret)) {
    throw new Error(`setting proxyAuthSecret: must be a Secrets Manager secret ARN, got ${JSON.stringify(settings.proxyAuthSecret)}`);
  }
  if (settings.proxyAuthSecret && !settings.proxyAuthFor) {
    throw new Error('setting proxyAuthFor: required with proxyAuthSecret: the proxies (http(s) URLs, comma-separated) that get the credentials');
  }
  for (const entry of settings.proxyAuthFor.split(',').map((e) => e.trim()).filter(Boolean)) {
    if (!/^https?:$/.test(URL.canParse(entry) ? new URL(entry).protocol : '')) {
      throw new Error(`setting proxyAuthFor: ${JSON.stringify(entry)} is not an http:// or https:// proxy URL`);
    }
  }
  if (settings.alarmEmail && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(settings.alarmEmail)) {
    throw new Error(`setting alarmEmail: not an e-mail address: ${settings.alarmEmail}`);
  }
  return settings;
}

function settingValue(key: string, fallback: unknown, value: unknown): unknown {
  if (key === 'headerSecrets') return headerSecretsValue(value);
  if (typeof fallback === 'number') {
    const n = Number(value);
    if (typeof value === 'boolean' || !Number.isFinite(n) || n <= 0) throw new Error(`setting ${key}: expected a positive number, got ${JSON.stringify(value)}`);
    return n;
  }
  if (typeof fallback === 'boolean') {
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    throw new Error(`setting ${key}: expected true or false, got ${JSON.stringify(value)}`);
  }
  return String(value);
}

/** A complete Secrets Manager secret ARN (the settings that name secrets take only these). */
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/;

/** `headerSecrets`: an object (cdk.json) or its JSON text (`-c headerSecrets='{...}'`), checked entry by entry. */
function headerSecretsValue(value: unknown): Record<string, string> {
  let parsed: unknown = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      throw new Error(`setting headerSecrets: expected a JSON object {"VARIABLE": "arn:aws:secretsmanager:..."}, got ${JSON.stringify(value)}`);
    }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('setting headerSecrets: expected an object of VARIABLE: secret ARN');
  for (const [name, arn] of Object.entries(parsed)) {
    // Not fanout's or Lambda's own: the worker's configuration, or what the runtime reads (NODE_OPTIONS, TZ...).
    if (!ENV_VAR_NAME.test(name) || RESERVED_VARIABLE.test(name) || /^(LAMBDA_|_)/i.test(name) || /^(NODE_\w+|TZ|PATH|LD_\w+|LANG|HOME)$/i.test(name)) {
      throw new Error(`setting headerSecrets: ${JSON.stringify(name)} is not a variable name the worker may be given`);
    }
    if (typeof arn !== 'string' || !SECRET_ARN.test(arn)) {
      throw new Error(`setting headerSecrets: ${name} must be a Secrets Manager secret ARN, got ${JSON.stringify(arn)}`);
    }
  }
  return parsed as Record<string, string>;
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
  readonly parked: Queue;
  readonly ledger: Table;
  readonly apiFunction: LambdaFunction;
  readonly workerFunction: LambdaFunction;
  readonly scheduleFunction: LambdaFunction;
  readonly tokenSecret: Secret;
  readonly callbackSecret: Secret;
  readonly observability: Observability;
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
    this.callbackSecret = new Secret(this, 'CallbackSecret', {
      description: 'fanout: signs completion callbacks (HMAC); receivers verify with the same value',
      generateSecretString: { passwordLength: 48, excludePunctuation: true, includeSpace: false },
    });
    acknowledge(this.callbackSecret, 'AwsSolutions-SMG4', 'a shared signing key that callback receivers hold too: rotating it is a coordinated change, done by putting a new value');

    // The job ledger: one item per job with atomic counters, so finishing a chunk and reading a
    // status cost a constant number of requests. Derived data (jobs live in S3): destroyed with the stack.
    this.ledger = new Table(this, 'JobLedger', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.AWS_MANAGED,
      timeToLiveAttribute: 'expiresAt',
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // --- queues --------------------------------------------------------------------------------
    // The worker consumes the dead letters too, so they get the same visibility margin.
    const visibilityTimeout = Duration.seconds(settings.workerTimeoutSeconds * 6);
    // Where a dead letter goes when turning it into chunk_failed records keeps failing: a poison
    // message stops there (and raises an alarm) instead of looping. Nothing consumes it.
    this.parked = new Queue(this, 'ParkedDeadLetters', {
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    acknowledge(this.parked, 'AwsSolutions-SQS3', 'this is the last dead-letter queue (of the dead-letter queue): an alarm watches it, nothing redrives it');
    this.deadLetters = new Queue(this, 'ChunkDeadLetters', {
      visibilityTimeout,
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.parked, maxReceiveCount: settings.deadLetterMaxReceiveCount },
    });
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
      FANOUT_LEDGER_TABLE: this.ledger.tableName,
      FANOUT_MAX_RECEIVE_COUNT: String(settings.maxReceiveCount),
      // The worker's last try of a dead letter (it then counts the chunk as lost rather than throw).
      FANOUT_DLQ_MAX_RECEIVE_COUNT: String(settings.deadLetterMaxReceiveCount),
      FANOUT_VISIBILITY_TIMEOUT: String(settings.workerTimeoutSeconds * 6),
      // The API refuses a timeoutMs the worker could never wait for.
      FANOUT_WORKER_TIMEOUT_SECONDS: String(settings.workerTimeoutSeconds),
      FANOUT_DLQ_ARN: this.deadLetters.queueArn,
      // The only variables jobs may name in headerEnv (the API refuses others, the worker too): a
      // Lambda's environment also holds its role's credentials.
      FANOUT_HEADER_ENV_VARS: Object.keys(settings.headerSecrets).join(','),
      NODE_OPTIONS: '--enable-source-maps',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      POWERTOOLS_METRICS_NAMESPACE: 'fanout',
    };
    const fn = (name: string, bundle: BundleName, extra: Partial<FunctionProps>, more: Record<string, string> = {}) => {
      const logGroup = new LogGroup(this, `${name}Logs`, { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
      return new LambdaFunction(this, name, {
        runtime: Runtime.NODEJS_24_X,
        architecture: Architecture.ARM_64,
        handler: 'index.handler',
        code: handlerCode(bundle),
        environment: { ...environment, POWERTOOLS_SERVICE_NAME: `fanout-${bundle}`, ...more },
        loggingFormat: LoggingFormat.JSON,
        logGroup,
        ...(settings.tracing ? { tracing: Tracing.ACTIVE } : {}),
        ...extra,
      });
    };
    this.apiFunction = fn('Api', 'api', { memorySize: 512, timeout: Duration.seconds(29), description: 'fanout HTTP API (Hono)' });
    this.workerFunction = fn(
      'Worker',
      'worker',
      { memorySize: settings.workerMemoryMb, timeout: Duration.seconds(settings.workerTimeoutSeconds), description: 'fanout worker: fetches chunks, plans large lists' },
      // Only the worker signs completion callbacks; it also resolves jobs' headerEnv variables and the
      // proxies' credentials (their ARNs).
      {
        FANOUT_CALLBACK_SECRET_ARN: this.callbackSecret.secretArn,
        ...settings.headerSecrets,
        ...(settings.proxyAuthSecret ? { FANOUT_PROXY_AUTH: settings.proxyAuthSecret, FANOUT_PROXY_AUTH_FOR: settings.proxyAuthFor } : {}),
      },
    );
    this.scheduleFunction = fn('ScheduleTarget', 'schedule', { memorySize: 256, timeout: Duration.seconds(60), description: 'fanout schedule target' });

    this.workerFunction.addEventSource(
      new SqsEventSource(this.queue, { batchSize: 2, reportBatchItemFailures: true, maxConcurrency: settings.maxConcurrency }),
    );
    this.workerFunction.addEventSource(new SqsEventSource(this.deadLetters, { batchSize: 1, reportBatchItemFailures: true, maxConcurrency: 2 }));

    // --- least-privilege IAM ---------------------------------------------------------------------
    const objects = (...prefixes: string[]) => prefixes.map((p) => this.bucket.arnForObjects(p));
    const s3 = (actions: string[], resources: string[]) => new PolicyStatement({ effect: Effect.ALLOW, actions, resources });
    const listBucket = s3(['s3:ListBucket'], [this.bucket.bucketArn]);
    // lib-storage aborts a failed multipart upload: wherever a function writes, it may abort too.
    const readWrite = ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'];
    // API: plans jobs (reads uploads, writes jobs/), answers status and results, makes upload slots.
    this.apiFunction.addToRolePolicy(s3(readWrite, objects('jobs/*', 'uploads/*')));
    // ... and lists schedules' runs (schedules/NAME/runs/, written by the schedule target and the worker).
    this.apiFunction.addToRolePolicy(s3(['s3:GetObject'], objects('schedules/*')));
    this.apiFunction.addToRolePolicy(listBucket);
    // Worker: fetches chunks into jobs/, plans large lists from uploads/ and lists/.
    this.workerFunction.addToRolePolicy(s3(readWrite, objects('jobs/*')));
    this.workerFunction.addToRolePolicy(s3(['s3:GetObject'], objects('uploads/*', 'lists/*')));
    // A finished scheduled run rewrites its entry in schedules/NAME/runs/ and schedules/NAME/last.json.
    this.workerFunction.addToRolePolicy(s3(readWrite, objects('schedules/*')));
    // ... and deletes an upload's list once it has planned (or refused) it: uploads must not pile up.
    this.workerFunction.addToRolePolicy(s3(['s3:DeleteObject'], objects('uploads/*')));
    this.workerFunction.addToRolePolicy(listBucket);
    // The worker announces finished jobs on the default event bus (`source: fanout`, `Job Finished`): that alone.
    this.workerFunction.addToRolePolicy(
      new PolicyStatement({
        effect: Effect.ALLOW,
        actions: ['events:PutEvents'],
        resources: [Stack.of(this).formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' })],
      }),
    );
    this.workerFunction.addEnvironment('FANOUT_EVENT_BUS', 'default');
    // Schedule target: reads its list from lists/, plans into jobs/.
    this.scheduleFunction.addToRolePolicy(s3(['s3:GetObject'], objects('lists/*')));
    this.scheduleFunction.addToRolePolicy(s3(readWrite, objects('jobs/*', 'schedules/*')));
    this.scheduleFunction.addToRolePolicy(listBucket);
    for (const f of [this.apiFunction, this.workerFunction, this.scheduleFunction]) this.queue.grantSendMessages(f);
    this.tokenSecret.grantRead(this.apiFunction);
    this.tokenSecret.grantRead(this.workerFunction); // signs callbacks with it when no callback secret is set
    this.callbackSecret.grantRead(this.workerFunction);
    // Read access to exactly the secrets jobs may name through headerEnv, nothing wider.
    for (const [name, arn] of Object.entries(settings.headerSecrets)) {
      Secret.fromSecretCompleteArn(this, `HeaderSecret-${name}`, arn).grantRead(this.workerFunction);
    }
    if (settings.proxyAuthSecret) Secret.fromSecretCompleteArn(this, 'ProxyAuthSecret', settings.proxyAuthSecret).grantRead(this.workerFunction);
    // The ledger: the worker and the schedule target create and count jobs; the API reads status
    // and marks cancelled jobs. No scans, no deletes (items expire by TTL).
    const ledger = (actions: string[]) => new PolicyStatement({ effect: Effect.ALLOW, actions: actions.map((a) => `dynamodb:${a}`), resources: [this.ledger.tableArn] });
    this.workerFunction.addToRolePolicy(ledger(['GetItem', 'Query', 'PutItem', 'UpdateItem']));
    this.scheduleFunction.addToRolePolicy(ledger(['GetItem', 'Query', 'PutItem', 'UpdateItem']));
    this.apiFunction.addToRolePolicy(ledger(['GetItem', 'Query', 'UpdateItem']));

    const bucketId = this.getLogicalId(this.bucket.node.defaultChild as CfnBucket);
    for (const f of [this.apiFunction, this.workerFunction, this.scheduleFunction]) {
      const role = f.role!;
      acknowledge(role, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', 'grants only writing this function\'s own logs');
      for (const prefix of ['jobs', 'uploads', 'lists', 'schedules']) {
        acknowledge(role, `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${prefix}/*]`, `job ids and upload ids are made at run time: access is scoped to the ${prefix}/ prefix`);
      }
      if (settings.tracing) {
        acknowledge(role, 'AwsSolutions-IAM5[Resource::*]', 'X-Ray trace segments and telemetry (xray:PutTraceSegments, PutTelemetryRecords) have no resource-level permissions');
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
    // GET /schedules lists the same file (compact; Lambda allows 4 KB of environment in all).
    if (this.schedules.length > 0) this.apiFunction.addEnvironment('FANOUT_SCHEDULES_JSON', JSON.stringify({ schedules: this.schedules }));
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

    // --- alarms, dashboard ------------------------------------------------------------------------
    this.observability = new Observability(this, 'Observability', {
      alarmEmail: settings.alarmEmail,
      api: this.api,
      apiFunction: this.apiFunction,
      workerFunction: this.workerFunction,
      queue: this.queue,
      deadLetters: this.deadLetters,
      parked: this.parked,
    });

    new CfnOutput(this, 'ApiUrl', { value: this.api.apiEndpoint, description: 'FANOUT_API' });
    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new CfnOutput(this, 'TokenSecretArn', {
      value: this.tokenSecret.secretArn,
      description: 'aws secretsmanager get-secret-value --secret-id ARN --query SecretString --output text',
    });
    new CfnOutput(this, 'QueueUrl', { value: this.queue.queueUrl });
    new CfnOutput(this, 'CallbackSecretArn', {
      value: this.callbackSecret.secretArn,
      description: 'the key callback receivers verify signatures with (get-secret-value, as for the token)',
    });
    new CfnOutput(this, 'LedgerTableName', { value: this.ledger.tableName });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.observability.topic.topicArn, description: 'subscribe to get the alarms' });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://${this.region}.console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards/dashboard/${this.observability.dashboard.dashboardName}`,
    });
  }
}
