/**
 * The functions' code, bundled by the CDK app itself at synth (no `npm run build` first, no
 * Docker): each asset runs the project's own esbuild build (scripts/build.ts, whose plugin slims
 * zod and undici) for one handler. esbuild plugins need its async API and CDK's local bundling is
 * synchronous, so the build runs in a child process on this same Node.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AssetHashType, DockerImage } from 'aws-cdk-lib';
import { Code } from 'aws-cdk-lib/aws-lambda';
import type { BundleName } from '../scripts/build.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The asset of one handler: `index.mjs` (and its source map) built into CDK's bundling folder.
 * Hashed by its output, so `cdk diff` shows a change only when the bundle changed. Stacks whose
 * bundling is skipped (`cdk synth` of another stack, unit tests with `aws:cdk:bundling-stacks: []`)
 * build nothing.
 *
 * @example
 * new LambdaFunction(this, 'Api', { code: handlerCode('api'), handler: 'index.handler', ... });
 */
export function handlerCode(name: BundleName): Code {
  const command = ['scripts/build.ts', '--entry', name, '--outdir'];
  return Code.fromAsset(join(ROOT, 'functions'), {
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      // Never pulled: local bundling always succeeds or throws. Required by the BundlingOptions type.
      image: DockerImage.fromRegistry('fanout-bundles-locally'),
      // Also keeps the three assets' cache keys apart (CDK's cache key ignores the tryBundle closure).
      command,
      local: {
        tryBundle(outputDir: string): boolean {
          execFileSync(process.execPath, ['--import', 'tsx', ...command, outputDir], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
          return true;
        },
      },
    },
  });
}
