/**
 * `npm run build`: bundles the Lambda handlers with esbuild into dist/{api,worker,schedule}/index.mjs
 * (ESM, minified, with source maps). These files are what the stack deploys. The AWS SDK v3 is
 * left out: the Lambda Node.js runtime ships it.
 */
import { build, type Metafile, type Plugin } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));

export const ENTRIES = {
  api: 'functions/aws/handlers/api.ts',
  worker: 'functions/aws/handlers/worker.ts',
  schedule: 'functions/aws/handlers/schedule.ts',
} as const;

export interface BuiltBundle {
  name: keyof typeof ENTRIES;
  file: string;
  bytes: number;
}

/**
 * Keeps the bundles small (each must stay under 1 MiB and import fast):
 * - zod's classic entry re-exports every locale (~40 languages); fanout speaks English only;
 * - undici's entry loads every dispatcher, mock and cache; the worker needs Agent and the request API.
 */
const slimDependencies: Plugin = {
  name: 'slim-dependencies',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes('/node_modules/zod/') ? { path: 'zod-locales', namespace: 'fanout-slim' } : undefined,
    );
    b.onResolve({ filter: /^undici$/ }, () => ({ path: 'undici', namespace: 'fanout-slim' }));
    b.onLoad({ filter: /^zod-locales$/, namespace: 'fanout-slim' }, () => ({
      contents: "export { default as en } from 'zod/v4/locales/en.js';",
      resolveDir: root,
    }));
    b.onLoad({ filter: /^undici$/, namespace: 'fanout-slim' }, () => ({
      contents: [
        "import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';",
        "import api from 'undici/lib/api/index.js';",
        "import Agent from 'undici/lib/dispatcher/agent.js';",
        "import Client from 'undici/lib/dispatcher/client.js';",
        "import Pool from 'undici/lib/dispatcher/pool.js';",
        "import buildConnector from 'undici/lib/core/connect.js';",
        'Object.assign(Dispatcher.prototype, api);',
        'export { Agent, buildConnector, Client, Dispatcher, Pool };',
      ].join('\n'),
      resolveDir: root,
    }));
  },
};

/** Builds every handler; returns their sizes. */
export async function buildBundles(outdir = join(root, 'dist')): Promise<BuiltBundle[]> {
  rmSync(outdir, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, file]) => [`${name}/index`, file])),
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    // ESM builds first: jsonc-parser's CommonJS build is a UMD wrapper with dynamic requires.
    mainFields: ['module', 'main'],
    metafile: true,
    external: ['@aws-sdk/*', '@smithy/*'],
    // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
    banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
    logLevel: 'warning',
    plugins: [slimDependencies],
  });
  return sizes(result.metafile, outdir);
}

function sizes(metafile: Metafile, outdir: string): BuiltBundle[] {
  return (Object.keys(ENTRIES) as (keyof typeof ENTRIES)[]).map((name) => {
    const file = join(outdir, name, 'index.mjs');
    const output = Object.entries(metafile.outputs).find(([path]) => join(root, path) === file);
    return { name, file, bytes: output?.[1].bytes ?? 0 };
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const bundle of await buildBundles()) {
    console.log(`${bundle.file.replace(root, '')}  ${(bundle.bytes / 1024).toFixed(0)} KiB`);
  }
}
