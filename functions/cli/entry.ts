/**
 * The program's entry point, bundled into build/cli/fanout.mjs. `--version` answers before anything
 * else is loaded, so it costs a Node start-up and little more; everything else loads the commands.
 */
import { VERSION } from '../core/version.ts';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
} else {
  // A closed pipe on stdout (`fanout results JOB | head -1`) ends the command quietly, with 0.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { main } = await import('./main.ts');
  process.exit(await main(process.argv));
}
