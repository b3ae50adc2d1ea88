// Runs the CLI from its TypeScript sources (tsx, with the project's tsconfig), so tests exercise
// the code as it is now rather than the last build. The installed package is tested from its tarball.
import { register } from 'tsx/esm/api';
import { fileURLToPath } from 'node:url';

register({ tsconfig: fileURLToPath(new URL('../../tsconfig.json', import.meta.url)) });
await import('../../functions/cli/entry.ts');
