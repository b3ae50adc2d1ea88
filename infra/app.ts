/**
 * The CDK app: the fanout stack, checked by cdk-nag's AwsSolutions rules at every synth (a finding
 * that is not acknowledged with a reason fails `cdk synth`, `diff` and `deploy`).
 * Settings come from context (cdk.json or -c name=value): see DEFAULT_SETTINGS in fanout-stack.ts.
 * The functions are bundled here, at synth (bundle.ts): no `npm run build` first.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FanoutStack } from './fanout-stack.ts';

/**
 * Adds the fanout stack and the cdk-nag checks to an app.
 *
 * @example
 * const stack = fanoutApp(new App());
 */
export function fanoutApp(app: App): FanoutStack {
  const stack = new FanoutStack(app, 'Fanout', {
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return stack;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) fanoutApp(new App());
