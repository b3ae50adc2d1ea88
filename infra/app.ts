/**
 * The CDK app: the fanout stack, checked by cdk-nag's AwsSolutions rules at every synth.
 * Settings come from context (cdk.json or -c name=value): see DEFAULT_SETTINGS in fanout-stack.ts.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FanoutStack } from './fanout-stack.ts';

const app = new App();
new FanoutStack(app, 'Fanout', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
