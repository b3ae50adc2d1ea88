#!/usr/bin/env node
// The fanout CLI: the compiled build in build/cli (made by scripts/build-cli.ts; `npm ci`,
// `npm install` and `npm pack` run it through `prepare`). The installed package holds only the
// build. In a checkout, a build older than the sources is made again first (about a second), so
// `npx fanout` never runs stale code there.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = new URL('../build/cli/fanout.mjs', import.meta.url);
const sources = fileURLToPath(new URL('../functions/', import.meta.url));

/** Newest modification time of the files under a folder. */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

if (existsSync(sources)) {
  // The sources, the build script and the installed dependencies (through the lock file).
  const inputs = ['../scripts/build-cli.ts', '../package-lock.json'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const changed = Math.max(newest(sources), ...inputs.filter((p) => existsSync(p)).map((p) => statSync(p).mtimeMs));
  const stale = !existsSync(built) || statSync(built).mtimeMs < changed;
  if (stale) {
    process.stderr.write('fanout: building build/cli from the sources (npm run build:cli)\n');
    const root = fileURLToPath(new URL('..', import.meta.url));
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-cli.ts'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  }
}
await import(built.href);
