/**
 * The Lambda bundles, built with esbuild (ESM, minified, source maps, the AWS SDK included):
 * - `npm run build` writes dist/{api,worker,schedule}/index.mjs (the tests run these on Node 24);
 * - the CDK app builds the same bundles at synth (infra/bundle.ts runs `--entry NAME --outdir DIR`
 *   in a child process: esbuild's plugins need its async API, CDK's local bundling is synchronous).
 */
import { build, type BuildOptions, type Metafile, type Plugin } from 'esbuild';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));

export const ENTRIES = {
  api: 'functions/aws/handlers/api.ts',
  worker: 'functions/aws/handlers/worker.ts',
  schedule: 'functions/aws/handlers/schedule.ts',
} as const;

export type BundleName = keyof typeof ENTRIES;
export const BUNDLE_NAMES = Object.keys(ENTRIES) as BundleName[];
const isBundleName = (name: string): name is BundleName => Object.hasOwn(ENTRIES, name);

export interface BuiltBundle {
  name: BundleName;
  file: string;
  bytes: number;
}

/** zod's classic entry re-exports every locale (~40 languages); fanout speaks English only (also the CLI's build). */
export const englishOnly: Plugin = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes('/node_modules/zod/') ? { path: 'zod-locales', namespace: 'fanout-slim' } : undefined,
    );
    b.onLoad({ filter: /^zod-locales$/, namespace: 'fanout-slim' }, () => ({
      contents: "export { default as en } from 'zod/v4/locales/en.js';",
      resolveDir: root,
    }));
  },
};

/**
 * Keeps the Lambda bundles small and quick to import: undici's entry loads every dispatcher, mock
 * and cache; the worker needs Agent, Client, Pool, ProxyAgent and the request API.
 */
const lambdaUndici: Plugin = {
  name: 'lambda-undici',
  setup(b) {
    b.onResolve({ filter: /^undici$/ }, () => ({ path: 'undici', namespace: 'fanout-slim' }));
    b.onLoad({ filter: /^undici$/, namespace: 'fanout-slim' }, () => ({
      contents: [
        "import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';",
        "import api from 'undici/lib/api/index.js';",
        "import Agent from 'undici/lib/dispatcher/agent.js';",
        "import Client from 'undici/lib/dispatcher/client.js';",
        "import Pool from 'undici/lib/dispatcher/pool.js';",
        "import buildConnector from 'undici/lib/core/connect.js';",
        "import ProxyAgent from 'undici/lib/dispatcher/proxy-agent.js';",
        'Object.assign(Dispatcher.prototype, api);',
        'export { Agent, buildConnector, Client, Dispatcher, Pool, ProxyAgent };',
      ].join('\n'),
      resolveDir: root,
    }));
  },
};

/** The esbuild options of one handler's bundle (the same for `npm run build` and `cdk synth`). */
export function bundleOptions(name: BundleName, outdir: string): BuildOptions {
  return {
    absWorkingDir: root,
    entryPoints: { [`${name}/index`]: ENTRIES[name] },
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: true,
    // Stack traces (NODE_OPTIONS=--enable-source-maps) need the mappings, not a copy of every source.
    sourcemap: true,
    sourcesContent: false,
    legalComments: 'none',
    // ESM builds first: jsonc-parser's CommonJS build is a UMD wrapper with dynamic requires; the
    // AWS SDK's ESM builds tree-shake.
    mainFields: ['module', 'main'],
    metafile: true,
    // The AWS SDK is bundled, not left to the runtime: the deployed code runs the lockfile's SDK
    // (with lib-storage and the presigner, which the runtime does not ship).
    // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
    banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
    logLevel: 'warning',
    plugins: [englishOnly, lambdaUndici],
  };
}

/**
 * Builds one handler into `outdir/NAME/index.mjs` (and its source map); returns its size.
 *
 * @example
 * const { bytes } = await buildBundle('worker', '/tmp/out'); // writes /tmp/out/worker/index.mjs
 */
export async function buildBundle(name: BundleName, outdir: string): Promise<BuiltBundle> {
  const result = await build(bundleOptions(name, outdir));
  return size(name, result.metafile!, outdir);
}

/**
 * Builds every handler into `outdir` (emptied first); returns their sizes.
 *
 * @example
 * for (const b of await buildBundles()) console.log(b.name, b.bytes);
 */
export async function buildBundles(outdir = join(root, 'dist')): Promise<BuiltBundle[]> {
  rmSync(outdir, { recursive: true, force: true });
  return Promise.all(BUNDLE_NAMES.map((name) => buildBundle(name, outdir)));
}

function size(name: BundleName, metafile: Metafile, outdir: string): BuiltBundle {
  const file = join(outdir, name, 'index.mjs');
  const output = Object.entries(metafile.outputs).find(([path]) => resolve(root, path) === file);
  return { name, file, bytes: output?.[1].bytes ?? 0 };
}

/**
 * Builds one handler for the CDK app into `outputDir` (index.mjs and its map at the top). It is
 * built first in a folder of the project two levels down, like dist/NAME/, so that the source
 * map's relative paths, hence the bundle and its asset hash, are the same whatever `cdk synth -o`
 * says: `cdk diff` shows no change when no code changed.
 *
 * @example
 * bundleInto('api', '/path/to/cdk.out/bundling-temp-x');
 */
export async function bundleInto(name: BundleName, outputDir: string): Promise<BuiltBundle> {
  const scratch = mkdtempSync(join(root, '.tmp-dist-'));
  try {
    const built = await buildBundle(name, scratch);
    mkdirSync(outputDir, { recursive: true });
    for (const file of readdirSync(join(scratch, name))) cpSync(join(scratch, name, file), join(outputDir, file));
    return { ...built, file: join(outputDir, 'index.mjs') };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** `tsx scripts/build.ts` builds all into dist/; `--entry NAME --outdir DIR` builds one for the CDK app. */
async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { entry: { type: 'string' }, outdir: { type: 'string' } } });
  if (values.entry !== undefined) {
    if (!isBundleName(values.entry)) throw new Error(`--entry must be one of ${BUNDLE_NAMES.join(', ')}, not ${values.entry}`);
    if (!values.outdir) throw new Error('--entry needs --outdir');
    await bundleInto(values.entry, resolve(values.outdir));
    return;
  }
  for (const bundle of await buildBundles(values.outdir ? resolve(values.outdir) : undefined)) {
    console.log(`${relative(root, bundle.file)}  ${(bundle.bytes / 1024).toFixed(0)} KiB`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) await main(process.argv.slice(2));
