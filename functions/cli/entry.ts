/**
 * The program's entry point, bundled into build/cli/fanout.mjs. `--version` answers before anything
 * else is loaded, so it costs a Node start-up and little more; everything else loads the commands.
 */
import { setFlagsFromString } from 'node:v8';
import { VERSION } from '../core/version.ts';

/**
 * undici parses HTTP with llhttp, a WebAssembly module. V8 compiles it with its baseline compiler
 * (Liftoff) and, once hot, again with TurboFan on a background thread: about 50 ms of CPU, which
 * on one core lands in a job's first wave. Measured whole: the latency-bound job (5,000 x 100 ms at
 * concurrency 500, one core) 1.29 -> 1.23 s, 40,000 URLs -2.2% (14 pairs), 300,000 URLs no
 * different. Set before anything compiles llhttp; V8 flags hold for the worker threads too. Only
 * where Liftoff compiles every WebAssembly instruction itself (with this flag nothing falls back).
 */
const LIFTOFF_ONLY = process.arch === 'x64' || process.arch === 'arm64';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
} else {
  // A closed pipe on stdout (`fanout results JOB | head -1`) ends the command quietly, with 0.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  if (LIFTOFF_ONLY) setFlagsFromString('--liftoff-only');
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { main } = await import('./main.ts');
  process.exit(await main(process.argv));
}
