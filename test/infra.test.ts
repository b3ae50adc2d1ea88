import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fanoutApp } from '../infra/app.ts';
import { FanoutStack, type FanoutSettings } from '../infra/fanout-stack.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync('/tmp/fanout-infra-test-');
const outdirs: string[] = [];
const schedulesFile = join(scratch, 'schedules.json');
// What users get: the context of the project's cdk.json.
const cdkJsonContext = JSON.parse(readFileSync(join(root, 'cdk.json'), 'utf8')).context as Record<string, unknown>;

/** Synthesizes the stack with bundling skipped (the real build is test/cdk-synth.test.ts's job). */
function synth(settings: Partial<FanoutSettings> = {}, context: Record<string, unknown> = {}) {
  const outdir = mkdtempSync('/tmp/cdk.out.fanout-');
  outdirs.push(outdir);
  const app = new App({ outdir, context: { ...cdkJsonContext, 'aws:cdk:bundling-stacks': [], ...context } });
  const stack = new FanoutStack(app, 'Fanout', { settings: { schedulesFile: relative(root, schedulesFile), ...settings } });
  return { app, stack, template: Template.fromStack(stack), outdir };
}

type Resources = Record<string, { Properties: Record<string, any>; DeletionPolicy?: string }>;
type Statement = { id: string; Action: string | string[]; Resource: unknown; Effect: string };

function statementsOf(template: Template): Statement[] {
  const policies = template.findResources('AWS::IAM::Policy') as Resources;
  return Object.entries(policies).flatMap(([id, p]) => (p.Properties.PolicyDocument.Statement as Omit<Statement, 'id'>[]).map((s) => ({ id, ...s })));
}

/** The three functions' environments, by construct id (Api, Worker, ScheduleTarget). */
function environments(template: Template): Record<string, Record<string, unknown>> {
  const functions = template.findResources('AWS::Lambda::Function') as Resources;
  return Object.fromEntries(
    Object.entries(functions).map(([id, f]) => [['ScheduleTarget', 'Worker', 'Api'].find((name) => id.startsWith(name))!, f.Properties.Environment.Variables]),
  );
}

const refTo = (template: Template, type: string, prefix: string) => {
  const ids = Object.keys(template.findResources(type)).filter((id) => id.startsWith(prefix));
  expect(ids, `${type} ${prefix}`).toHaveLength(1);
  return ids[0]!;
};

let template: Template;
let app: App;
// Every non-default setting at once (context values as `cdk deploy -c name=value` gives them), synthesized once.
let customized: ReturnType<typeof synth> | undefined;
const custom = () =>
  (customized ??= synth({}, {
    maxConcurrency: '40',
    workerTimeoutSeconds: '600',
    deadLetterMaxReceiveCount: '12',
    tracing: 'true',
    alarmEmail: 'ops@example.com',
    headerSecrets: JSON.stringify({ API_TOKEN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:partner-token-AbCdEf' }),
    proxyAuthSecret: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-XyZ123',
    proxyAuthFor: 'http://proxy.corp.example:3128',
  }));
beforeAll(() => {
  writeFileSync(
    schedulesFile,
    JSON.stringify({
      schedules: [
        { name: 'nightly', expression: 'cron(0 3 * * ? *)', timezone: 'Europe/Paris', list: 'lists/nightly.txt', options: { concurrency: 32 } },
        { name: 'paused', expression: 'rate(1 hour)', list: 'lists/hourly.txt', enabled: false },
      ],
    }),
  );
  ({ template, app } = synth());
  custom();
  // Loading aws-cdk-lib and the first synths take seconds, far more on a busy machine.
}, 120_000);
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  for (const d of outdirs) rmSync(d, { recursive: true, force: true });
});

describe('the CDK stack', () => {
  it('keeps the bucket private, encrypted, TLS-only, with old jobs expiring', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'results/' }),
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Id: 'expire-old-jobs', Prefix: 'jobs/', ExpirationInDays: 30, Status: 'Enabled' }),
          Match.objectLike({ Id: 'expire-uploads', Prefix: 'uploads/', ExpirationInDays: 7 }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('has a chunk queue with a dead-letter queue, visibility well above the worker timeout', () => {
    const deadLetters = refTo(template, 'AWS::SQS::Queue', 'ChunkDeadLetters');
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 1800,
      RedrivePolicy: { maxReceiveCount: 5, deadLetterTargetArn: { 'Fn::GetAtt': [deadLetters, 'Arn'] } },
      SqsManagedSseEnabled: true,
    });
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('worker'), Timeout: 300 });
  });

  it('parks a dead letter that keeps failing in a third queue, so a poison message cannot loop', () => {
    const deadLetters = refTo(template, 'AWS::SQS::Queue', 'ChunkDeadLetters');
    const parked = refTo(template, 'AWS::SQS::Queue', 'ParkedDeadLetters');
    const queues = template.findResources('AWS::SQS::Queue') as Resources;
    expect(Object.keys(queues)).toHaveLength(3);
    expect(queues[deadLetters]!.Properties.RedrivePolicy).toEqual({ maxReceiveCount: 10, deadLetterTargetArn: { 'Fn::GetAtt': [parked, 'Arn'] } });
    expect(queues[parked]!.Properties.RedrivePolicy).toBeUndefined();
    expect(queues[parked]!.Properties).toMatchObject({ MessageRetentionPeriod: 14 * 86400, SqsManagedSseEnabled: true });
    // Nothing consumes the parked queue: only the chunk queue and the dead letters feed the worker.
    const sources = Object.values(template.findResources('AWS::Lambda::EventSourceMapping') as Resources).map((m) => m.Properties.EventSourceArn['Fn::GetAtt'][0]);
    expect(sources.sort()).toEqual([deadLetters, refTo(template, 'AWS::SQS::Queue', 'Chunks')].sort());
    custom().template.hasResourceProperties('AWS::SQS::Queue', { RedrivePolicy: { maxReceiveCount: 12, deadLetterTargetArn: Match.anyValue() } });
    // The worker's last try of a dead letter is the one before SQS parks it.
    expect(environments(custom().template).Worker!.FANOUT_DLQ_MAX_RECEIVE_COUNT).toBe('12');
    expect(() => synth({}, { deadLetterMaxReceiveCount: '5' })).toThrow(/deadLetterMaxReceiveCount: must be above maxReceiveCount/);
  });

  it('runs the three functions on nodejs24.x arm64 with JSON logs and the contract environment', () => {
    const functions = template.findResources('AWS::Lambda::Function') as Resources;
    expect(Object.keys(functions)).toHaveLength(3);
    for (const resource of Object.values(functions)) {
      expect(resource.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        LoggingConfig: { LogFormat: 'JSON' },
      });
      expect(resource.Properties.TracingConfig).toBeUndefined();
    }
    const env = environments(template);
    for (const [name, vars] of Object.entries(env)) {
      expect(Object.keys(vars), name).toEqual(
        expect.arrayContaining(['FANOUT_BUCKET', 'FANOUT_QUEUE_URL', 'FANOUT_TOKEN_SECRET_ARN', 'FANOUT_MAX_RECEIVE_COUNT', 'FANOUT_DLQ_ARN', 'FANOUT_LEDGER_TABLE']),
      );
      expect(vars, name).toMatchObject({ FANOUT_WORKER_TIMEOUT_SECONDS: '300', POWERTOOLS_METRICS_NAMESPACE: 'fanout' });
      expect(vars.FANOUT_LEDGER_TABLE, name).toEqual({ Ref: refTo(template, 'AWS::DynamoDB::Table', 'JobLedger') });
    }
    expect(env.Api!.POWERTOOLS_SERVICE_NAME).toBe('fanout-api');
    expect(env.Worker!.POWERTOOLS_SERVICE_NAME).toBe('fanout-worker');
    expect(env.ScheduleTarget!.POWERTOOLS_SERVICE_NAME).toBe('fanout-schedule');
    expect(environments(custom().template).Api!.FANOUT_WORKER_TIMEOUT_SECONDS).toBe('600');
  });

  it('feeds the worker from SQS with partial batch responses and a settable maximum concurrency', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 10 },
      BatchSize: 2,
    });
    custom().template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 40 } });
    custom().template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 3600 });
  });

  it('puts the HTTP API in front of the api function, with access logs and throttling', () => {
    template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
      DefaultRouteSettings: { ThrottlingRateLimit: 200, ThrottlingBurstLimit: 400 },
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Integration', { IntegrationType: 'AWS_PROXY', PayloadFormatVersion: '2.0' });
  });

  it('keeps the token and the callback key in Secrets Manager and outputs what a user needs', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 2);
    template.hasResourceProperties('AWS::SecretsManager::Secret', { GenerateSecretString: Match.objectLike({ PasswordLength: 48 }) });
    for (const output of ['ApiUrl', 'BucketName', 'TokenSecretArn', 'CallbackSecretArn', 'LedgerTableName', 'AlarmTopicArn', 'DashboardUrl']) {
      template.hasOutput(output, Match.anyValue());
    }
  });

  it('signs callbacks on AWS: the callback secret is the worker\'s alone', () => {
    const secret = refTo(template, 'AWS::SecretsManager::Secret', 'CallbackSecret');
    const env = environments(template);
    expect(env.Worker!.FANOUT_CALLBACK_SECRET_ARN).toEqual({ Ref: secret });
    expect(env.Api!.FANOUT_CALLBACK_SECRET_ARN).toBeUndefined();
    expect(env.ScheduleTarget!.FANOUT_CALLBACK_SECRET_ARN).toBeUndefined();
    const readers = statementsOf(template).filter((s) => JSON.stringify(s.Resource).includes(`"${secret}"`));
    expect(readers.map((s) => s.id.replace(/ServiceRole.*/, ''))).toEqual(['Worker']);
    expect([readers[0]!.Action].flat()).toContain('secretsmanager:GetSecretValue');
  });

  it('keeps the job ledger in DynamoDB: on demand, recoverable, encrypted, expiring, destroyed with the stack', () => {
    const id = refTo(template, 'AWS::DynamoDB::Table', 'JobLedger');
    const table = (template.findResources('AWS::DynamoDB::Table') as Resources)[id]!;
    expect(table.DeletionPolicy).toBe('Delete');
    expect(table.Properties).toMatchObject({
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }, { AttributeName: 'sk', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
    });
    const actionsOn = (fn: string) =>
      statementsOf(template)
        .filter((s) => s.id.startsWith(`${fn}ServiceRole`) && JSON.stringify(s.Resource).includes(`"${id}"`))
        .flatMap((s) => [s.Action].flat())
        .sort();
    const readWrite = ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem'];
    expect(actionsOn('Worker')).toEqual(readWrite);
    expect(actionsOn('ScheduleTarget')).toEqual(readWrite);
    expect(actionsOn('Api')).toEqual(['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem']);
  });

  it('turns schedules.json into EventBridge Scheduler schedules targeting the schedule function', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 2);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      State: 'ENABLED',
      Target: Match.objectLike({ Input: Match.stringLikeRegexp('"list":"lists/nightly.txt"') }),
    });
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(1 hour)', State: 'DISABLED' });
  });

  it('lets the worker put Job Finished events on the default bus, and nothing else on EventBridge', () => {
    const events = statementsOf(template).filter((s) => [s.Action].flat().some((a) => a.startsWith('events:')));
    expect(events).toHaveLength(1);
    expect(events[0]!.id.startsWith('WorkerServiceRole')).toBe(true);
    expect(events[0]!.Action).toBe('events:PutEvents');
    expect(JSON.stringify(events[0]!.Resource)).toMatch(/:event-bus\/default"/);
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: Match.objectLike({
        Statement: Match.arrayWith([
          Match.objectLike({ Action: 'events:PutEvents', Effect: 'Allow', Resource: { 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp(':event-bus/default$')])] } }),
        ]),
      }),
    });
    const env = environments(template);
    expect(env.Worker!.FANOUT_EVENT_BUS).toBe('default');
    // GET /schedules lists the file the stack deployed.
    const listed = JSON.parse(env.Api!.FANOUT_SCHEDULES_JSON as string) as { schedules: { name: string }[] };
    expect(listed.schedules.map((x) => x.name)).toEqual(['nightly', 'paused']);
  });

  it('refuses at synth a schedule whose list the schedule function may not read', () => {
    const bad = join(scratch, 'bad-schedules.json');
    writeFileSync(bad, JSON.stringify({ schedules: [{ name: 'x', expression: 'rate(1 day)', list: 'uploads/x.txt' }] }));
    expect(() => synth({ schedulesFile: relative(root, bad) })).toThrow(/must be under lists\//);
  });

  it('refuses settings of the wrong kind, naming them', () => {
    expect(() => synth({}, { tracing: 'yes' })).toThrow(/setting tracing: expected true or false/);
    expect(() => synth({}, { workerTimeoutSeconds: 'ten' })).toThrow(/setting workerTimeoutSeconds/);
    expect(() => synth({ alarmEmail: 'ops' })).toThrow(/setting alarmEmail/);
  });

  it('sends every alarm, and its return to OK, to an encrypted TLS-only topic', () => {
    const topic = refTo(template, 'AWS::SNS::Topic', 'ObservabilityAlarmTopic');
    const key = refTo(template, 'AWS::KMS::Key', 'ObservabilityAlarmTopicKey');
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [key, 'Arn'] } });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: { Statement: Match.arrayWith([Match.objectLike({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] })]) },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Action: 'sns:Publish', Principal: { Service: 'cloudwatch.amazonaws.com' } }),
        ]),
      },
    });
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm') as Resources);
    expect(alarms).toHaveLength(4);
    for (const alarm of alarms) {
      expect(alarm.Properties.AlarmActions, alarm.Properties.AlarmDescription).toEqual([{ Ref: topic }]);
      expect(alarm.Properties.OKActions, alarm.Properties.AlarmDescription).toEqual([{ Ref: topic }]);
    }
  });

  it('subscribes the alarm e-mail address only when cdk.json gives one', () => {
    expect(cdkJsonContext.alarmEmail).toBe('');
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    custom().template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com', TopicArn: Match.anyValue() });
  });

  it('alarms on dead letters, worker errors, failed chunks and parked messages', () => {
    const queueAlarm = (queue: string) => ({
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Namespace: 'AWS/SQS',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [refTo(template, 'AWS::SQS::Queue', queue), 'QueueName'] } }],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', queueAlarm('ChunkDeadLetters'));
    template.hasResourceProperties('AWS::CloudWatch::Alarm', queueAlarm('ParkedDeadLetters'));
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: refTo(template, 'AWS::Lambda::Function', 'Worker') } }],
      Threshold: 0,
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'fanout',
      MetricName: 'ChunksFailed',
      Dimensions: [{ Name: 'service', Value: 'fanout-worker' }],
      Statistic: 'Sum',
      Period: 300,
      EvaluationPeriods: 1,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('draws a dashboard of the worker metrics, the queues, the worker and the API', () => {
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard') as Resources);
    expect(dashboards).toHaveLength(1);
    // The body is JSON joined with references: replace those to read it.
    const parts = dashboards[0]!.Properties.DashboardBody['Fn::Join'][1] as unknown[];
    const body = JSON.parse(parts.map((p) => (typeof p === 'string' ? p : 'REF')).join('')) as {
      widgets: { type: string; properties: { title: string; metrics?: unknown[][]; alarms?: string[] } }[];
    };
    const metrics = body.widgets.flatMap((w) => w.properties.metrics ?? []);
    const named = (namespace: string, name: string) => metrics.filter((m) => m[0] === namespace && m[1] === name);
    for (const metric of ['UrlsFetched', 'UrlsSucceeded', 'UrlsFailed', 'ChunksFailed', 'ChunkDuration', 'JobsFinished']) {
      expect(named('fanout', metric).length, metric).toBeGreaterThan(0);
      for (const m of named('fanout', metric)) expect(m.slice(2, 4), metric).toEqual(['service', 'fanout-worker']);
    }
    expect(metrics).toContainEqual([
      { expression: `SEARCH('{fanout,code,service} MetricName="UrlsFailedByCode" service="fanout-worker"', 'Sum', 300)` },
    ]);
    for (const metric of ['ApproximateNumberOfMessagesVisible', 'ApproximateAgeOfOldestMessage']) expect(named('AWS/SQS', metric), metric).toHaveLength(3);
    for (const metric of ['Duration', 'Errors', 'Throttles']) expect(named('AWS/Lambda', metric).length, metric).toBeGreaterThan(0);
    for (const metric of ['4xx', '5xx', 'Latency']) expect(named('AWS/ApiGateway', metric).length, metric).toBeGreaterThan(0);
    expect(body.widgets.find((w) => w.type === 'alarm')?.properties.alarms).toHaveLength(4);
  });

  it('turns on X-Ray active tracing only when the tracing setting says so', () => {
    const { template: traced } = custom();
    const functions = Object.values(traced.findResources('AWS::Lambda::Function') as Resources);
    for (const f of functions) expect(f.Properties.TracingConfig).toEqual({ Mode: 'Active' });
    expect(JSON.stringify(statementsOf(traced))).toContain('xray:PutTraceSegments');
    expect(JSON.stringify(statementsOf(template))).not.toContain('xray:');
  });

  it('grants least privilege: prefixes per function, aborting uploads where it writes, no wildcard actions or resources', () => {
    const statements = statementsOf(template);
    for (const s of statements) {
      const actions = [s.Action].flat();
      expect(actions.some((a) => a === '*' || a.endsWith(':*')), `${s.id} ${actions}`).toBe(false);
      expect(JSON.stringify(s.Resource)).not.toBe('"*"');
      if (actions.includes('s3:PutObject')) expect(actions, s.id).toContain('s3:AbortMultipartUpload');
    }
    expect(statements.some((s) => [s.Action].flat().includes('s3:PutObject'))).toBe(true);
    const of = (fn: string) => JSON.stringify(statements.filter((s) => s.id.startsWith(fn)));
    expect(of('ApiServiceRole')).toContain('/uploads/*');
    expect(of('ApiServiceRole')).not.toContain('/lists/*');
    expect(of('WorkerServiceRole')).toContain('/lists/*');
    expect(of('ScheduleTargetServiceRole')).not.toContain('/uploads/*');
    // The worker deletes an upload's list once it has planned it (tryout defect 3).
    const workerDeletesUploads = statements.some(
      (s) => s.id.startsWith('WorkerServiceRole') && [s.Action].flat().includes('s3:DeleteObject') && JSON.stringify(s.Resource).includes('/uploads/*'),
    );
    expect(workerDeletesUploads).toBe(true);
  });

  it('passes the cdk-nag AwsSolutions checks, each acknowledgement justified', () => {
    const result = new AwsSolutionsChecks(app).validateScope(app);
    expect(result.violations ?? []).toEqual([]);
    expect(result.success).toBe(true);
    // With tracing (X-Ray's resource-less actions) and an e-mail subscription too.
    const other = custom().app;
    expect(new AwsSolutionsChecks(other).validateScope(other).violations ?? []).toEqual([]);
  });

  it('fails the synth of the CDK app itself on an unacknowledged cdk-nag finding', () => {
    const appOf = () => new App({ outdir: mkdtempSync('/tmp/cdk.out.fanout-'), context: { ...cdkJsonContext, 'aws:cdk:bundling-stacks': [], schedulesFile: relative(root, schedulesFile) } });
    const clean = appOf();
    outdirs.push(clean.outdir);
    fanoutApp(clean);
    expect(() => clean.synth()).not.toThrow();
    const flawed = appOf();
    outdirs.push(flawed.outdir);
    new Bucket(fanoutApp(flawed), 'Unlogged');
    expect(() => flawed.synth()).toThrow(/AwsSolutions-S1/);
  });

  it('gives the worker the headerEnv secrets it is told of (their ARNs as variables) and read access to exactly those', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:partner-token-AbCdEf';
    expect(environments(custom().template).Worker!.API_TOKEN).toBe(arn);
    expect(environments(custom().template).Api!.API_TOKEN).toBeUndefined();
    // Jobs may name those variables and no other (the Lambda environment holds its role's credentials).
    expect(environments(custom().template).Worker!.FANOUT_HEADER_ENV_VARS).toBe('API_TOKEN');
    expect(environments(custom().template).Api!.FANOUT_HEADER_ENV_VARS).toBe('API_TOKEN');
    expect(environments(template).Worker!.FANOUT_HEADER_ENV_VARS).toBe('');
    const reads = statementsOf(custom().template).filter((st) => JSON.stringify(st.Resource).includes('partner-token'));
    expect(reads.length).toBeGreaterThan(0);
    for (const st of reads) expect([st.Action].flat()).toEqual(expect.arrayContaining(['secretsmanager:GetSecretValue']));
    expect(() => synth({}, { headerSecrets: '{"API_TOKEN": "not-an-arn"}' })).toThrow(/setting headerSecrets: API_TOKEN must be a Secrets Manager secret ARN/);
    for (const name of ['FANOUT_TOKEN', 'fanout_token', 'AWS_REGION', 'NODE_OPTIONS', 'LAMBDA_TASK_ROOT', '_HANDLER', 'TZ', 'PATH']) {
      expect(() => synth({}, { headerSecrets: `{"${name}": "${arn}"}` }), name).toThrow(/is not a variable name the worker may be given/);
    }
  });

  it('gives the worker the proxies\' credentials as a secret ARN in FANOUT_PROXY_AUTH, with read access to that secret alone', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:proxy-credentials-XyZ123';
    expect(environments(custom().template).Worker!.FANOUT_PROXY_AUTH).toBe(arn);
    expect(environments(custom().template).Api!.FANOUT_PROXY_AUTH).toBeUndefined();
    expect(environments(template).Worker!.FANOUT_PROXY_AUTH).toBeUndefined(); // not set: no variable
    const reads = statementsOf(custom().template).filter((st) => JSON.stringify(st.Resource).includes('proxy-credentials'));
    expect(reads.length).toBeGreaterThan(0);
    for (const st of reads) expect([st.Action].flat()).toEqual(expect.arrayContaining(['secretsmanager:GetSecretValue']));
    expect(environments(custom().template).Worker!.FANOUT_PROXY_AUTH_FOR).toBe('http://proxy.corp.example:3128');
    expect(() => synth({}, { proxyAuthSecret: 'alice:s3cret', proxyAuthFor: 'http://p:1' })).toThrow(/setting proxyAuthSecret: must be a Secrets Manager secret ARN/);
    expect(() => synth({}, { proxyAuthSecret: arn })).toThrow(/setting proxyAuthFor: required with proxyAuthSecret/);
    expect(() => synth({}, { proxyAuthSecret: arn, proxyAuthFor: 'proxy.corp:3128' })).toThrow(/setting proxyAuthFor: "proxy.corp:3128" is not an http/);
  });
});
