/**
 * Seeing fanout fail: an SNS topic every alarm notifies (and tells when it is OK again), an optional
 * e-mail subscription, the alarms, and a CloudWatch dashboard of the worker's metrics (Powertools
 * Metrics, EMF, namespace `fanout`), the queues, the worker and the API.
 */
import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  MathExpression,
  Metric,
  TreatMissingData,
  Unit,
  type IMetric,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Effect, PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The worker's metrics, as the worker emits them (Powertools Metrics: namespace and `service` dimension). */
export const WORKER_METRICS = {
  namespace: 'fanout',
  service: 'fanout-worker',
  /** Sum: URLs whose fetch ended (one record each), succeeded, failed. */
  count: ['UrlsFetched', 'UrlsSucceeded', 'UrlsFailed'],
  /** Sum, with a `code` dimension (the record's error code). */
  failedByCode: 'UrlsFailedByCode',
  /** Sum: chunks that ended as chunk_failed records (after the dead-letter queue). */
  chunksFailed: 'ChunksFailed',
  /** Milliseconds per chunk. */
  chunkDuration: 'ChunkDuration',
  /** Sum: jobs that reached a final state. */
  jobsFinished: 'JobsFinished',
} as const;

const PERIOD = Duration.minutes(5);

export interface ObservabilityProps {
  /** An address to e-mail alarms to (it must confirm the subscription); none when empty. */
  alarmEmail: string;
  api: HttpApi;
  apiFunction: IFunction;
  workerFunction: IFunction;
  queue: IQueue;
  deadLetters: IQueue;
  parked: IQueue;
}

export class Observability extends Construct {
  readonly topic: Topic;
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const stack = Stack.of(this);

    // CloudWatch can publish to an encrypted topic only with a customer-managed key it may use
    // (the AWS-managed aws/sns key does not let it).
    const key = new Key(this, 'AlarmTopicKey', {
      description: 'fanout: encrypts the alarm topic',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    key.addToResourcePolicy(
      new PolicyStatement({
        effect: Effect.ALLOW,
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'], // in a key policy, "*" is this key
      }),
    );
    this.topic = new Topic(this, 'AlarmTopic', { displayName: 'fanout alarms', masterKey: key, enforceSSL: true });
    this.topic.addToResourcePolicy(
      new PolicyStatement({
        effect: Effect.ALLOW,
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: {
          ArnLike: { 'aws:SourceArn': stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
          StringEquals: { 'aws:SourceAccount': stack.account },
        },
      }),
    );
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));

    // --- alarms --------------------------------------------------------------------------------
    const chunksFailed = this.worker(WORKER_METRICS.chunksFailed);
    this.alarm('DeadLettersAlarm', 'chunk messages reached the dead-letter queue (their URLs get chunk_failed records)', props.deadLetters.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum' }));
    this.alarm('WorkerErrorsAlarm', 'the worker function failed invocations', props.workerFunction.metricErrors({ period: PERIOD }));
    this.alarm('ChunksFailedAlarm', 'chunks ended as chunk_failed records (their URLs were not fetched)', chunksFailed);
    this.alarm('ParkedMessagesAlarm', 'dead letters could not be turned into chunk_failed records and were parked: a job may stay running until they are looked at', props.parked.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum' }));

    // --- dashboard -----------------------------------------------------------------------------
    const queues: [string, IQueue][] = [['chunks', props.queue], ['dead letters', props.deadLetters], ['parked', props.parked]];
    const wide = { width: 12, height: 6 };
    this.dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(3) });
    this.dashboard.addWidgets(new AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 3 }));
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'URLs', left: WORKER_METRICS.count.map((m) => this.worker(m)), ...wide }),
      new GraphWidget({
        title: 'Failed URLs by error code',
        left: [
          new MathExpression({
            expression: `SEARCH('{${WORKER_METRICS.namespace},code,service} MetricName="${WORKER_METRICS.failedByCode}" service="${WORKER_METRICS.service}"', 'Sum', ${PERIOD.toSeconds()})`,
            usingMetrics: {},
            label: '',
            period: PERIOD,
          }),
        ],
        ...wide,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Chunks failed, jobs finished', left: [chunksFailed, this.worker(WORKER_METRICS.jobsFinished)], ...wide }),
      new GraphWidget({
        title: 'Chunk duration (ms)',
        left: ['Average', 'p99', 'Maximum'].map((statistic) => this.worker(WORKER_METRICS.chunkDuration, statistic, Unit.MILLISECONDS)),
        ...wide,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Queue depth (messages visible)', left: queues.map(([label, q]) => q.metricApproximateNumberOfMessagesVisible({ label, period: PERIOD, statistic: 'Maximum' })), ...wide }),
      new GraphWidget({ title: 'Oldest message age (s)', left: queues.map(([label, q]) => q.metricApproximateAgeOfOldestMessage({ label, period: PERIOD, statistic: 'Maximum' })), ...wide }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Worker duration (ms)',
        left: ['Average', 'p99', 'Maximum'].map((statistic) => props.workerFunction.metricDuration({ statistic, period: PERIOD, label: statistic })),
        ...wide,
      }),
      new GraphWidget({
        title: 'Worker invocations, errors, throttles',
        left: [props.workerFunction.metricInvocations({ period: PERIOD }), props.workerFunction.metricErrors({ period: PERIOD }), props.workerFunction.metricThrottles({ period: PERIOD })],
        ...wide,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'API requests, 4xx, 5xx',
        left: [props.api.metricCount({ period: PERIOD }), props.api.metricClientError({ period: PERIOD }), props.api.metricServerError({ period: PERIOD })],
        ...wide,
      }),
      new GraphWidget({
        title: 'API latency (ms)',
        left: ['p50', 'p99'].map((statistic) => props.api.metricLatency({ statistic, period: PERIOD, label: `latency ${statistic}` })),
        right: [props.apiFunction.metricErrors({ period: PERIOD, label: 'api function errors' })],
        ...wide,
      }),
    );
  }

  /** One of the worker's EMF metrics. */
  private worker(metricName: string, statistic = 'Sum', unit?: Unit): Metric {
    return new Metric({
      namespace: WORKER_METRICS.namespace,
      metricName,
      dimensionsMap: { service: WORKER_METRICS.service },
      statistic,
      period: PERIOD,
      ...(unit ? { unit } : {}),
      // A label would turn an alarm's metric into a metric-math form; sums read fine unlabelled.
      ...(statistic === 'Sum' ? {} : { label: `${metricName} ${statistic}` }),
    });
  }

  /** An alarm on any value above 0 in 5 minutes, notifying the topic when it fires and when it clears. */
  private alarm(id: string, description: string, metric: IMetric): Alarm {
    const alarm = new Alarm(this, id, {
      alarmDescription: `fanout: ${description}`,
      metric,
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    const action = new SnsAction(this.topic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    this.alarms.push(alarm);
    return alarm;
  }
}
