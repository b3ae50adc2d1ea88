#!/usr/bin/env node
// The fanout CLI: the compiled build (build/cli, made by `npm run build:cli`, which `npm ci`,
// `npm install` and `npm pack` run through `prepare`). In a clone where it was never built, the
// TypeScript sources run through tsx, with the project's own tsconfig (JSX settings included).
import { existsSync } from 'node:fs';

const built = new URL('../build/cli/fanout.mjs', import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register({ tsconfig: new URL('../tsconfig.json', import.meta.url).pathname });
  await import('../functions/cli/entry.ts');
}
