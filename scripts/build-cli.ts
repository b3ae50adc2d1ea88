/**
 * Builds the installed CLI (run by `npm pack`/`npm publish` through the `prepack` script, and by
 * bin/fanout.mjs in a checkout whose build is missing or stale): plain JavaScript in build/cli, so `fanout` needs neither tsx nor esbuild at run
 * time and installs with no dependencies at all.
 * - fanout.mjs: the command (functions/cli/entry.ts); the commands load as a separate chunk, so
 *   `fanout --version` parses almost nothing;
 * - thread-worker.mjs: the worker threads' code (threads.ts starts threads from it);
 * - swagger-ui/: Swagger UI's script and style, so /docs works offline (meta.ts serves them).
 * The dashboard's JSX is compiled here, with the project's tsconfig (jsxImportSource hono/jsx),
 * so it no longer depends on the directory `fanout` runs in.
 */
import { build, type Plugin } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { englishOnly } from './build.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Build settings, stated once. */
export const CLI_BUILD = {
  outdir: join(root, 'build', 'cli'),
  entries: { fanout: 'functions/cli/entry.ts', 'thread-worker': 'functions/local/thread-worker.ts' },
  /** Files of swagger-ui-dist that /docs needs. */
  swaggerFiles: ['swagger-ui-bundle.js', 'swagger-ui.css', 'LICENSE', 'NOTICE'],
} as const;

/** undici's classes by the file that defines them: enough to load only those the sources use. */
const UNDICI_FILES: Record<string, string> = {
  Agent: 'undici/lib/dispatcher/agent.js',
  Client: 'undici/lib/dispatcher/client.js',
  Pool: 'undici/lib/dispatcher/pool.js',
  ProxyAgent: 'undici/lib/dispatcher/proxy-agent.js',
  Dispatcher: 'undici/lib/dispatcher/dispatcher.js',
  buildConnector: 'undici/lib/core/connect.js',
  errors: 'undici/lib/core/errors.js',
};

/** Names the sources import from 'undici' as values (type-only imports cost nothing). */
function undiciImports(dir = join(root, 'functions')): Set<string> {
  const names = new Set<string>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const name of undiciImports(path)) names.add(name);
      continue;
    }
    if (!/\.tsx?$/.test(entry.name)) continue;
    for (const match of readFileSync(path, 'utf8').matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+'undici'/g)) {
      if (match[1]) continue;
      for (const part of match[2]!.split(',')) {
        const name = part.trim();
        if (name !== '' && !name.startsWith('type ')) names.add(name.split(/\s+as\s+/)[0]!);
      }
    }
  }
  return names;
}

/**
 * undici's entry loads every dispatcher, mock, cache, fetch and WebSocket, about 500 KB that takes
 * ~100 ms to load on a busy machine: the CLI gets a module with only the classes the sources
 * import, and `request` (the client's) over the global dispatcher, as undici's own. A source
 * importing anything else gets the whole package, so nothing breaks, it is only slower.
 */
const slimUndici: Plugin = {
  name: 'slim-undici',
  setup(b) {
    const names = undiciImports();
    const known = [...names].every((n) => n === 'request' || n in UNDICI_FILES);
    if (!known) return;
    b.onResolve({ filter: /^undici$/ }, () => ({ path: 'undici', namespace: 'fanout-slim' }));
    b.onLoad({ filter: /^undici$/, namespace: 'fanout-slim' }, () => {
      const classes = [...new Set(['Agent', 'Dispatcher', ...[...names].filter((n) => n in UNDICI_FILES)])];
      return {
        contents: [
          ...classes.map((n) => `import ${n} from '${UNDICI_FILES[n]}';`),
          "import api from 'undici/lib/api/index.js';",
          "import { getGlobalDispatcher } from 'undici/lib/global.js';",
          'Object.assign(Dispatcher.prototype, api);',
          // undici's request(url, opts): the URL split into origin and path, on the global dispatcher.
          'export function request(url, opts = {}) {',
          '  const u = new URL(url);',
          '  const { dispatcher = getGlobalDispatcher(), ...rest } = opts;',
          "  return api.request.call(dispatcher, { ...rest, origin: u.origin, path: u.search ? u.pathname + u.search : u.pathname, method: opts.method || (opts.body ? 'PUT' : 'GET') });",
          '}',
          `export { ${classes.join(', ')} };`,
        ].join('\n'),
        resolveDir: root,
      };
    });
  },
};

/** Builds build/cli; returns the files written and their sizes in bytes. */
export async function buildCli(outdir: string = CLI_BUILD.outdir): Promise<Record<string, number>> {
  rmSync(outdir, { recursive: true, force: true });
  await build({
    absWorkingDir: root,
    entryPoints: CLI_BUILD.entries,
    outdir,
    outExtension: { '.js': '.mjs' },
    // Chunks sit beside the entries: code that finds files relative to import.meta.url
    // (thread-worker.mjs, swagger-ui/) finds them from any chunk.
    chunkNames: 'chunk-[hash]',
    splitting: true,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // FANOUT_CLI_MINIFY=0 keeps names and lines, for CPU profiles (docs/performance.md).
    minify: process.env.FANOUT_CLI_MINIFY !== '0',
    legalComments: 'linked',
    // ESM builds first: jsonc-parser's CommonJS build is a UMD wrapper with dynamic requires.
    mainFields: ['module', 'main'],
    // Only the development path of threads.ts imports it (when running from TypeScript sources).
    external: ['esbuild'],
    // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
    banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
    logLevel: 'warning',
    plugins: [englishOnly, slimUndici],
  });
  const swagger = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  mkdirSync(join(outdir, 'swagger-ui'), { recursive: true });
  for (const file of CLI_BUILD.swaggerFiles) copyFileSync(join(swagger, file), join(outdir, 'swagger-ui', file));
  const sizes: Record<string, number> = {};
  const walk = (dir: string, prefix = '') => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path, `${prefix}${name}/`);
      else sizes[prefix + name] = statSync(path).size;
    }
  };
  walk(outdir);
  return sizes;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const sizes = await buildCli();
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  console.log(`build/cli: ${Object.keys(sizes).length} files, ${(total / 1024).toFixed(0)} KiB`);
}
