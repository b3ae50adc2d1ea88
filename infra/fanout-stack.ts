/**
 * fanout on AWS. Placeholder: the resources (HTTP API, SQS with a dead-letter queue, worker Lambda,
 * private bucket, token secret, schedules, alarms) arrive with the AWS issue.
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';

export class FanoutStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, { description: 'fanout: serverless fan-out fetcher', ...props });
  }
}
