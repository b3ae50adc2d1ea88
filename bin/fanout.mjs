#!/usr/bin/env node
// The fanout CLI: the compiled build in build/cli, made by scripts/build-cli.ts (`npm pack` and
// `npm publish` run it through `prepack`). The installed package holds only the build. In a
// checkout, a missing build, or one older than the sources, is made first (about a second), so
// `npm ci && npx fanout ...` works and never runs stale code. (A `prepare` script would build at
// `npm ci` too, but npm 11 then warns about an unapproved install script on every install of the
// package, although it never runs there.)
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
  const inputs = ['../scripts/build-cli.ts', '../scripts/build.ts', '../package-lock.json'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const changed = Math.max(newest(sources), ...inputs.filter((p) => existsSync(p)).map((p) => statSync(p).mtimeMs));
  const stale = !existsSync(built) || statSync(built).mtimeMs < changed;
  if (stale) {
    process.stderr.write('fanout: building build/cli from the sources (npm run build:cli)\n');
    const root = fileURLToPath(new URL('..', import.meta.url));
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-cli.ts'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  }
}
await import(built.href);
