import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FanoutStack, type FanoutSettings } from '../infra/fanout-stack.ts';
import { buildBundles } from '../scripts/build.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
// Bundles inside the project (their AWS SDK imports resolve from node_modules), one folder per test file.
const dist = mkdtempSync(join(root, '.tmp-dist-'));
const outdirs: string[] = [];
const schedulesFile = join(dist, 'schedules.json');

function synth(settings: Partial<FanoutSettings> = {}) {
  const outdir = mkdtempSync('/tmp/cdk.out.fanout-');
  outdirs.push(outdir);
  const app = new App({ outdir });
  const stack = new FanoutStack(app, 'Fanout', { settings: { distDir: relative(root, dist), schedulesFile: relative(root, schedulesFile), ...settings } });
  return { app, stack, template: Template.fromStack(stack), outdir };
}

let template: Template;
let app: App;
let outdir: string;
beforeAll(async () => {
  await buildBundles(dist);
  writeFileSync(
    schedulesFile,
    JSON.stringify({
      schedules: [
        { name: 'nightly', expression: 'cron(0 3 * * ? *)', timezone: 'Europe/Paris', list: 'lists/nightly.txt', options: { concurrency: 32 } },
        { name: 'paused', expression: 'rate(1 hour)', list: 'lists/hourly.txt', enabled: false },
      ],
    }),
  );
  ({ template, app, outdir } = synth());
});
afterAll(() => {
  rmSync(dist, { recursive: true, force: true });
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
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 1800,
      RedrivePolicy: { maxReceiveCount: 5, deadLetterTargetArn: Match.anyValue() },
      SqsManagedSseEnabled: true,
    });
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('worker'), Timeout: 300 });
  });

  it('runs the three bundles on nodejs24.x arm64 with JSON logs and the contract environment', () => {
    const functions = template.findResources('AWS::Lambda::Function');
    expect(Object.keys(functions)).toHaveLength(3);
    for (const resource of Object.values(functions)) {
      expect(resource.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        LoggingConfig: { LogFormat: 'JSON' },
      });
      expect(Object.keys(resource.Properties.Environment.Variables)).toEqual(
        expect.arrayContaining(['FANOUT_BUCKET', 'FANOUT_QUEUE_URL', 'FANOUT_TOKEN_SECRET_ARN', 'FANOUT_MAX_RECEIVE_COUNT', 'FANOUT_DLQ_ARN']),
      );
    }
  });

  it('deploys exactly the files npm run build wrote', () => {
    const manifest = JSON.parse(readFileSync(join(outdir, 'Fanout.assets.json'), 'utf8')) as { files: Record<string, { source: { path: string } }> };
    const staged = Object.values(manifest.files).map((f) => join(outdir, f.source.path, 'index.mjs'));
    for (const bundle of ['api', 'worker', 'schedule']) {
      const built = readFileSync(join(dist, bundle, 'index.mjs'));
      expect(staged.some((file) => { try { return readFileSync(file).equals(built); } catch { return false; } }), bundle).toBe(true);
    }
  });

  it('feeds the worker from SQS with partial batch responses and a settable maximum concurrency', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 10 },
      BatchSize: 2,
    });
    const custom = synth({ maxConcurrency: 40, workerTimeoutSeconds: 600 }).template;
    custom.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 40 } });
    custom.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 3600 });
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

  it('keeps the token in Secrets Manager and outputs the API URL, bucket and secret', () => {
    template.hasResourceProperties('AWS::SecretsManager::Secret', { GenerateSecretString: Match.objectLike({ PasswordLength: 48 }) });
    for (const output of ['ApiUrl', 'BucketName', 'TokenSecretArn']) template.hasOutput(output, Match.anyValue());
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

  it('refuses at synth a schedule whose list the schedule function may not read', () => {
    const bad = join(dist, 'bad-schedules.json');
    writeFileSync(bad, JSON.stringify({ schedules: [{ name: 'x', expression: 'rate(1 day)', list: 'uploads/x.txt' }] }));
    expect(() => synth({ schedulesFile: relative(root, bad) })).toThrow(/must be under lists\//);
  });

  it('alarms on dead letters and worker errors', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 0 });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Errors', Threshold: 0 });
  });

  it('grants least privilege: prefixes per function, no wildcard actions or resources', () => {
    const policies = template.findResources('AWS::IAM::Policy');
    const statements = Object.entries(policies).flatMap(([id, p]) =>
      (p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]).map((s) => ({ id, ...s })),
    );
    for (const s of statements) {
      const actions = [s.Action].flat();
      expect(actions.some((a) => a === '*' || a.endsWith(':*')), `${s.id} ${actions}`).toBe(false);
      expect(JSON.stringify(s.Resource)).not.toBe('"*"');
    }
    const of = (fn: string) => JSON.stringify(statements.filter((s) => s.id.startsWith(fn)));
    expect(of('ApiServiceRole')).toContain('/uploads/*');
    expect(of('ApiServiceRole')).not.toContain('/lists/*');
    expect(of('WorkerServiceRole')).toContain('/lists/*');
    expect(of('ScheduleTargetServiceRole')).not.toContain('/uploads/*');
  });

  it('passes the cdk-nag AwsSolutions checks, each acknowledgement justified', () => {
    const result = new AwsSolutionsChecks(app).validateScope(app);
    expect(result.violations ?? []).toEqual([]);
    expect(result.success).toBe(true);
  });
});
