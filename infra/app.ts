/**
 * The CDK app. The stack is a placeholder until the AWS issue adds the API, queue, workers, bucket
 * and schedules; it synthesises offline so `npm run synth` works from the start.
 */
import { App } from 'aws-cdk-lib';
import { FanoutStack } from './fanout-stack.ts';

const app = new App();
new FanoutStack(app, 'Fanout', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
